"""Send explanation results to every logger of a ``Trainer`` and keep a plain-file copy.

TensorBoard is first-class: scalars, images, markdown text and histograms all go to its
``SummaryWriter``. Other loggers receive what they support (scalars through ``log_metrics``;
images through ``log_image`` where the logger has it). Every item is also written under
``<log_dir>/xai/<name>/`` with atomic writes, so results survive without TensorBoard.

Everything here is a no-op on ranks other than global rank zero, and nothing here runs a
collective, so it is safe to call from rank-zero-only code.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lightning_xai.utilities.io import atomic_save, atomic_write, remove_stale_temporaries

if TYPE_CHECKING:  # pragma: no cover
    import pytorch_lightning as pl
    from matplotlib.figure import Figure

__all__ = ["NonFiniteWarning", "Reporter", "log_dir_of", "to_image_array"]

_CLEANED: set[Path] = set()  # directories whose stale temporaries this process removed
_WARNED: set[tuple[int, str, str]] = set()


class NonFiniteWarning(UserWarning):
    """A scalar, histogram or picture held NaN or inf and was skipped rather than logged."""


_TAG_SAFE = re.compile(r"[^A-Za-z0-9_.\-/]+")


def log_dir_of(trainer: pl.Trainer) -> Path:
    """The run's log directory: the first logger's ``log_dir`` (or ``save_dir``), else
    ``trainer.default_root_dir``.

    Unlike ``trainer.log_dir`` this never broadcasts, so rank-zero-only code may call it.
    """
    for logger in trainer.loggers:
        for attr in ("log_dir", "save_dir"):
            value = getattr(logger, attr, None)
            if value:
                return Path(value)
    return Path(trainer.default_root_dir)


def to_image_array(image: np.ndarray | torch.Tensor | Figure) -> np.ndarray:
    """Convert an image (``HxW``, ``HxWxC`` float in [0, 1] or uint8) or a matplotlib figure
    to a ``HxWx3`` (or ``x4``) ``uint8`` array. Figures are closed after conversion.

    Example:
        >>> to_image_array(np.zeros((2, 3))).shape
        (2, 3, 3)
    """
    if hasattr(image, "canvas") and hasattr(image, "savefig"):
        import matplotlib.pyplot as plt

        image.canvas.draw()
        array = np.asarray(image.canvas.buffer_rgba())[..., :3].copy()
        plt.close(image)
        return array
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"`image` must be HxW or HxWxC with C in (1, 3, 4), got shape {tuple(array.shape)}; "
            "transpose CxHxW tensors with `.permute(1, 2, 0)` first."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    return array


def _tag_path(tag: str) -> str:
    return _TAG_SAFE.sub("_", tag).strip("/") or "item"


class Reporter:
    """Writes scalars, images, text and histograms to ``trainer.loggers`` and to files.

    Args:
        trainer: the running trainer; its loggers and log directory are used.
        name: folder under ``<log_dir>/xai/`` for the plain-file copies (usually the callback's
            name).

    Example:
        >>> import tempfile, pytorch_lightning as pl
        >>> from pytorch_lightning.loggers import TensorBoardLogger
        >>> root = tempfile.mkdtemp()
        >>> trainer = pl.Trainer(logger=TensorBoardLogger(root), enable_progress_bar=False)
        >>> rep = Reporter(trainer, "demo")
        >>> rep.log_scalars({"fit/demo/score": 0.5}, step=0)
        >>> path = rep.log_text("fit/demo/table", "| a |\\n|---|\\n| 1 |", step=0)
        >>> path.name, path.parent.name
        ('epoch0000_step0000000.md', 'table')
    """

    def __init__(
        self,
        trainer: pl.Trainer,
        name: str,
        strict: bool = False,
        on_scalars: Callable[[Mapping[str, float], int], None] | None = None,
        epoch: int | None = None,
    ) -> None:
        self.trainer = trainer
        self.name = name
        self.epoch = epoch
        self.strict = strict
        self.on_scalars = on_scalars

    def skip_non_finite(self, tag: str, step: int, what: str) -> None:
        """Report a non-finite ``what`` under ``tag``: one warning per tag (naming the stage,
        epoch and quantity), or a ``ValueError`` when ``strict``."""
        epoch = (
            self.epoch if self.epoch is not None else getattr(self.trainer, "current_epoch", "?")
        )
        message = (
            f"{tag} at epoch {epoch}, step {int(step)}: {what} is not finite (NaN or inf); "
            "it was skipped, not logged. Non-finite explanations usually mean non-finite "
            "weights, inputs or a diverged loss."
        )
        if self.strict:
            raise ValueError(message + " (strict=True raises instead of skipping.)")
        key = (id(self.trainer), self.name, tag)  # once per trainer, callback and tag
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(message, NonFiniteWarning, stacklevel=3)

    @property
    def enabled(self) -> bool:
        """Whether this process writes (global rank zero)."""
        return bool(self.trainer.is_global_zero)

    @property
    def dir(self) -> Path:
        """``<log_dir>/xai/<name>/`` (created on first write). Temporaries that an
        interrupted earlier write left there are removed the first time it is used."""
        path = log_dir_of(self.trainer) / "xai" / self.name
        if path not in _CLEANED and self.enabled:
            _CLEANED.add(path)
            remove_stale_temporaries(path)
        return path

    def _tensorboards(self) -> list[Any]:
        from torch.utils.tensorboard import SummaryWriter

        writers = []
        for logger in self.trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if isinstance(experiment, SummaryWriter):
                writers.append(experiment)
        return writers

    def file_for(self, tag: str, step: int, suffix: str) -> str:
        """The one file layout of every callback, relative to :attr:`dir`:
        ``<stage>/<item>/epoch{E}_step{S}<suffix>`` for the tag ``"<stage>/<name>/<item>"``
        (the name is already the folder). Items saved together (a picture and its tensors) share
        the stem, e.g. ``file_for(tag, step, ".pt")`` next to the PNG."""
        parts = [p for p in _tag_path(tag).split("/") if p and p != self.name]
        epoch = self.epoch if self.epoch is not None else getattr(self.trainer, "current_epoch", 0)
        return f"{'/'.join(parts) or 'item'}/epoch{int(epoch):04d}_step{int(step):07d}{suffix}"

    _default_file = file_for

    # ------------------------------------------------------------------ scalars
    def log_scalars(self, metrics: Mapping[str, float | torch.Tensor], step: int) -> None:
        """Log scalar values under their tags; appended to ``scalars.csv`` as well.

        Non-finite values are skipped with a warning (see :meth:`skip_non_finite`). Rows of
        ``scalars.csv`` for the same tag at this or a later step (left by a run that was
        resumed from an earlier checkpoint and redoes those epochs) are replaced.
        """
        if not self.enabled or not metrics:
            return
        values = {}
        for k, v in metrics.items():
            value = float(v.detach().cpu().item() if torch.is_tensor(v) else v)
            if math.isfinite(value):
                values[k] = value
            else:
                self.skip_non_finite(k, step, "the value")
        if not values:
            return
        if self.on_scalars is not None:
            self.on_scalars(values, int(step))
        tensorboards = self._tensorboards()
        for writer in tensorboards:
            for key, value in values.items():
                writer.add_scalar(key, value, int(step))
            writer.flush()
        for logger in self.trainer.loggers:
            if getattr(logger, "experiment", None) not in tensorboards:
                logger.log_metrics(values, step=int(step))
        path = self.dir / "scalars.csv"
        rows = []
        if path.exists():
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        rows = [r for r in rows if not (r.get("tag") in values and int(r["step"]) >= int(step))]
        rows += [{"step": int(step), "tag": k, "value": v} for k, v in values.items()]
        self._write_csv(path, rows)

    # ------------------------------------------------------------------- images
    def log_image(
        self,
        tag: str,
        image: np.ndarray | torch.Tensor | Figure,
        step: int,
        file: str | None = None,
    ) -> Path | None:
        """Log an image (array or matplotlib figure) and save it as PNG; returns the PNG path."""
        if not self.enabled:
            if hasattr(image, "savefig"):
                import matplotlib.pyplot as plt

                plt.close(image)
            return None
        if not hasattr(image, "savefig"):
            raw = np.asarray(image.detach().cpu() if torch.is_tensor(image) else image)
            if raw.dtype.kind in "fc" and not np.isfinite(raw).all():
                self.skip_non_finite(tag, step, "the picture")
                return None
        array = to_image_array(image)
        tensorboards = self._tensorboards()
        for writer in tensorboards:
            writer.add_image(tag, array, int(step), dataformats="HWC")
            writer.flush()
        for logger in self.trainer.loggers:
            if getattr(logger, "experiment", None) not in tensorboards and hasattr(
                logger, "log_image"
            ):
                try:
                    logger.log_image(key=tag, images=[array], step=int(step))
                except TypeError:  # loggers with another signature
                    pass
        return self.save(file or self._default_file(tag, step, ".png"), array)

    # --------------------------------------------------------------------- text
    def log_text(self, tag: str, markdown: str, step: int, file: str | None = None) -> Path | None:
        """Log markdown text (TensorBoard renders tables) and save it as ``.md``."""
        if not self.enabled:
            return None
        for writer in self._tensorboards():
            writer.add_text(tag, markdown, int(step))
            writer.flush()
        return self.save(file or self._default_file(tag, step, ".md"), markdown)

    # --------------------------------------------------------------- histograms
    def log_histogram(
        self, tag: str, values: torch.Tensor | np.ndarray | Sequence[float], step: int
    ) -> None:
        """Log a histogram of ``values`` (TensorBoard only; the raw values are saved as ``.pt``)."""
        if not self.enabled:
            return
        tensor = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values)
        tensor = tensor.detach().cpu().flatten().to(torch.float64)
        if tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
            self.skip_non_finite(tag, step, "the histogram's values (empty or NaN/inf)")
            return
        for writer in self._tensorboards():
            writer.add_histogram(tag, tensor.numpy(), int(step))
            writer.flush()
        self.save(self._default_file(tag, step, ".pt"), tensor)

    # -------------------------------------------------------------------- files
    def save(self, relpath: str | Path, obj: Any) -> Path | None:
        """Write ``obj`` atomically to ``<dir>/<relpath>``, choosing the format by suffix.

        ``.pt``: ``torch.save``; ``.json``: JSON; ``.csv``: a list of dicts (one per row);
        ``.md``/``.txt``: a string; ``.png``: an image array or matplotlib figure.
        """
        if not self.enabled:
            return None
        path = self.dir / relpath
        suffix = path.suffix.lower()
        if suffix == ".pt":
            return atomic_save(path, lambda f: torch.save(obj, f))
        if suffix == ".json":
            return atomic_write(path, json.dumps(obj, indent=2, default=_json_default))
        if suffix == ".csv":
            return self._write_csv(path, obj)
        if suffix in (".md", ".txt"):
            return atomic_write(path, str(obj))
        if suffix == ".png":
            from PIL import Image

            array = to_image_array(obj)
            return atomic_save(path, lambda f: Image.fromarray(array).save(f, format="PNG"))
        raise ValueError(
            f"`relpath` has unsupported suffix {suffix!r} ({relpath}); "
            "use one of .pt, .json, .csv, .md, .txt, .png."
        )

    @staticmethod
    def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
        rows = list(rows)
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write(path, buffer.getvalue())


def _json_default(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
