"""The ``lightning-xai`` command: a ``LightningCLI`` over every module and datamodule.

Run ``lightning-xai fit --config configs/quickstart.yaml``; ``validate`` and ``test`` work the
same way (pass ``--ckpt_path`` to evaluate a trained checkpoint). Models, datamodules, loggers
and callbacks are given by ``class_path``/``init_args``, so user classes work as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from lightning_xai.utilities.report import log_dir_of

__all__ = ["XAICLI", "build_cli", "main", "run_summary"]


def run_summary(trainer: pl.Trainer) -> str:
    """Where a finished run put things: the run directory, the best checkpoint and the
    explanation report (what the CLI prints at the end of each subcommand)."""
    log_dir = log_dir_of(trainer)
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
    report = log_dir / "xai" / "report.html"
    lines = [
        f"Run directory:      {log_dir}",
        f"Best checkpoint:    {best or 'none saved'}",
        f"Explanation report: {report if report.exists() else 'none written (no lightning-xai callback ran)'}",
        f"TensorBoard:        tensorboard --logdir {log_dir}",
    ]
    return "\n".join(lines)


class XAICLI(LightningCLI):
    """``LightningCLI`` that ends each subcommand by printing :func:`run_summary`."""

    def _summary(self) -> None:
        if self.trainer.is_global_zero:
            print(run_summary(self.trainer), flush=True)

    def after_fit(self) -> None:
        self._summary()

    def after_validate(self) -> None:
        self._summary()

    def after_test(self) -> None:
        self._summary()


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the ``lightning-xai`` CLI.

    Args:
        args: command-line arguments (defaults to ``sys.argv[1:]``).
        run: whether to run the subcommand (``False`` only instantiates the classes).
    """
    return XAICLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
    )


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lightning-xai`` console script."""
    build_cli(args)


if __name__ == "__main__":  # pragma: no cover
    main()
