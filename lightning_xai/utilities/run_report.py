"""Write the run report (``<log_dir>/xai/report.html`` and ``report.md``) from a ``Trainer``.

The callbacks call :func:`write_run_report` at the end of every ``fit``, ``validate`` and
``test``; it can also be called by hand after a run. The page itself is built by
:func:`lightning_xai.viz.report.render_report` from the files alone.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_xai.utilities.io import atomic_write
from lightning_xai.utilities.report import log_dir_of

if TYPE_CHECKING:  # pragma: no cover
    import pytorch_lightning as pl

__all__ = ["REPORT_TAG", "RunReportWarning", "write_run_report"]

REPORT_TAG = "report/summary"


class RunReportWarning(UserWarning):
    """The run report could not be written; training went on without it."""


def _title(trainer: pl.Trainer, log_dir: Path) -> str:
    for logger in trainer.loggers:
        name, version = getattr(logger, "name", None), getattr(logger, "version", None)
        if name:
            suffix = f"/version_{version}" if isinstance(version, int) else f"/{version}"
            return f"lightning-xai report: {name}{suffix if version is not None else ''}"
    return f"lightning-xai report: {log_dir.name}"


def write_run_report(trainer: pl.Trainer) -> Path | None:
    """Render the run report of ``trainer``'s log directory, write ``report.html`` and
    ``report.md`` under ``<log_dir>/xai/`` atomically, and log the Markdown summary as
    TensorBoard text under ``report/summary``.

    Runs on global rank zero only and runs no collective. It never raises: any failure is
    turned into a :class:`RunReportWarning` naming the reason, so a report can never stop
    training.

    Args:
        trainer: the trainer whose run is reported.

    Returns:
        The path of ``report.html``, or ``None`` on other ranks, when the run has no ``xai/``
        folder (no callback saved anything yet) or when writing failed.

    Example:
        >>> import tempfile, pytorch_lightning as pl
        >>> from lightning_xai.utilities import Reporter
        >>> trainer = pl.Trainer(default_root_dir=tempfile.mkdtemp(), logger=False)
        >>> write_run_report(trainer) is None  # nothing saved yet
        True
        >>> Reporter(trainer, "demo").log_scalars({"fit/demo/score": 0.5}, step=0)
        >>> write_run_report(trainer).name
        'report.html'
    """
    try:
        if not trainer.is_global_zero:
            return None
        log_dir = log_dir_of(trainer)
        xai_dir = log_dir / "xai"
        if not xai_dir.is_dir():
            return None
        from lightning_xai.viz.report import render_report

        page, markdown = render_report(xai_dir, title=_title(trainer, log_dir))
        path = atomic_write(xai_dir / "report.html", page)
        atomic_write(xai_dir / "report.md", markdown)
        _log_text(trainer, markdown)
        return path
    except Exception as err:  # noqa: BLE001 - a report must never stop training
        warnings.warn(
            f"lightning-xai could not write the run report under <log_dir>/xai/: "
            f"{type(err).__name__}: {err}. Training is unaffected; rerun it later with "
            "`python -m lightning_xai.viz.report <log_dir>`.",
            RunReportWarning,
            stacklevel=2,
        )
        return None


def _log_text(trainer: pl.Trainer, markdown: str) -> None:
    from torch.utils.tensorboard import SummaryWriter

    step = int(getattr(trainer, "global_step", 0) or 0)
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if isinstance(experiment, SummaryWriter):
            experiment.add_text(REPORT_TAG, markdown, step)
            experiment.flush()
