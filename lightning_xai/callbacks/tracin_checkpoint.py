"""Record the checkpoints TracIn needs while the model trains."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from lightning_xai.callbacks._collective import agree
from lightning_xai.callbacks.base import ScheduleCallback
from lightning_xai.influence.checkpoints import Checkpoint, CheckpointStore, learning_rates
from lightning_xai.influence.errors import CheckpointError, NonFiniteError
from lightning_xai.influence.per_sample_grads import select_parameters
from lightning_xai.utilities.io import remove_stale_temporaries
from lightning_xai.utilities.report import log_dir_of

__all__ = ["TracInCheckpoint"]


class TracInCheckpoint(ScheduleCallback):
    """Save the tracked parameters and the current learning rate(s) every ``n`` training epochs
    and at the end of the last one.

    Each save is a :class:`~lightning_xai.influence.CheckpointStore` entry: the ``.pt`` file and
    then ``manifest.json`` (with the file's size and content hash) are written atomically, so an
    interrupted run leaves no half file that a reader trusts; temporary files an interrupted
    write left are removed when training starts. On resume, entries from the epoch training
    restarts at onwards are dropped and re-recorded, so no epoch is missing or duplicated; the
    directory is kept in the callback state, so a resumed run (even with a new logger version)
    continues the same store. Under DDP only global rank zero writes. Read the result with
    :class:`~lightning_xai.influence.TracIn` (``TracIn(model, callback.dirpath, loss_fn)``).

    Saves happen at the end of training epochs (never after a mid-epoch validation); the end of
    the last fit epoch is always recorded, also when early stopping or ``max_steps`` ends the
    fit on an epoch that ``every_n_epochs`` would skip.

    **Existing data is never deleted unasked.** A new fit (not a resume from a Lightning
    checkpoint holding this callback's state for the same directory) whose ``dirpath`` already
    holds recorded checkpoints stops before the first step with an error; pass
    ``overwrite=True`` to replace them, or choose a fresh directory.

    **Non-finite values are never recorded.** When the learning rate, a tracked parameter or a
    buffer is NaN or infinite at a save, that save is skipped with one warning per callback
    (naming the stage, epoch and quantity) and noted under ``"skipped"`` in the manifest, and
    training goes on; ``strict=True`` raises a
    :class:`~lightning_xai.influence.errors.NonFiniteError` instead.

    Args:
        every_n_epochs: save after every n-th training epoch; ``None``: only after the last.
        dirpath: the store's directory; default ``<log_dir>/xai/tracin/checkpoints`` (with
            ``name=``: ``<log_dir>/xai/<name>/checkpoints``).
        parameters: parameters to record (names relative to the LightningModule): ``None``
            for all trainable ones, ``"last"`` for the last layer, names or glob patterns.
            Buffers are always recorded.
        name: the callback's name (two recorders on one trainer need different names).
        overwrite: allow a new fit to replace the checkpoints already in ``dirpath``.
        strict: raise on a non-finite learning rate or weight instead of skipping the save.

    Example:
        >>> cb = TracInCheckpoint(every_n_epochs=2, parameters="last")
        >>> cb.every_n_epochs, cb.stages, cb.name
        (2, ('fit',), 'tracin_checkpoint')
    """

    def __init__(
        self,
        every_n_epochs: int | None = 1,
        dirpath: str | os.PathLike[str] | None = None,
        parameters: str | Sequence[str] | None = None,
        name: str | None = None,
        overwrite: bool = False,
        strict: bool = False,
    ) -> None:
        super().__init__(
            stages=("fit",),
            every_n_epochs=every_n_epochs,
            name=name or "tracin_checkpoint",
            strict=strict,
        )
        if parameters is not None and not (
            isinstance(parameters, str)
            or (isinstance(parameters, Sequence) and all(isinstance(p, str) for p in parameters))
        ):
            raise MisconfigurationException(
                "`parameters` must be None, 'all', 'last', a name/glob pattern or a list of "
                f"them; got {parameters!r}."
            )
        if dirpath is not None and (
            not isinstance(dirpath, (str, os.PathLike)) or not str(dirpath).strip()
        ):
            raise MisconfigurationException(
                f"`dirpath` must be a directory path or None, got {dirpath!r}."
            )
        if not isinstance(overwrite, bool):
            raise MisconfigurationException(
                f"`overwrite` must be True or False, got {overwrite!r}."
            )
        self.parameters = parameters
        self.overwrite = overwrite
        self._folder = "tracin" if name is None else name
        self._user_dirpath = dirpath is not None
        self.dirpath: Path | None = Path(dirpath) if dirpath is not None else None
        self.names: list[str] | None = None
        self._resumed_dirpath: Path | None = None  # the store a loaded checkpoint continues
        self._written: set[Path] = set()  # stores this instance wrote in an earlier fit
        self._warned: set[str] = set()

    @property
    def store(self) -> CheckpointStore:
        """The checkpoint store (available once ``fit`` has set the directory up)."""
        if self.dirpath is None:
            raise MisconfigurationException(
                "TracInCheckpoint has no directory yet: it is set in `setup` of `trainer.fit`, or "
                "pass `dirpath=`."
            )
        try:
            return CheckpointStore(self.dirpath)
        except CheckpointError as err:
            raise MisconfigurationException(f"TracInCheckpoint: {err}") from err

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._resumed_dirpath = None  # set by load_state_dict when a fit resumes
        if self.dirpath is None:
            default = str(log_dir_of(trainer) / "xai" / self._folder / "checkpoints")
            # every rank must read the store rank zero writes: take rank zero's directory
            self.dirpath = Path(trainer.strategy.broadcast(default, src=0))
        if stage == "fit":
            problem = None
            if trainer.is_global_zero and self.dirpath.exists() and not self.dirpath.is_dir():
                problem = (
                    f"TracInCheckpoint(dirpath={str(self.dirpath)!r}): the path is a file, not a "
                    "directory; pass a directory (new, or a store to resume), or remove the file."
                )
            agree(trainer, problem, MisconfigurationException)

    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        try:
            self.names = select_parameters(pl_module, self.parameters)
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(
                f"TracInCheckpoint(parameters={self.parameters!r}): {err}"
            ) from err
        # after the restore: a resume of the same run has loaded this callback's state by now
        problem = self._existing_store_problem(trainer) if trainer.is_global_zero else None
        agree(trainer, problem, MisconfigurationException)

    def _existing_store_problem(self, trainer: pl.Trainer) -> str | None:
        """Why this fit must not write to :attr:`dirpath` (it would drop recorded checkpoints),
        or ``None``."""
        dirpath = self.store.dirpath
        if not CheckpointStore(dirpath).manifest_path.exists():
            return None
        try:
            entries = CheckpointStore(dirpath).entries
        except CheckpointError as err:
            return (
                f"TracInCheckpoint(dirpath={str(dirpath)!r}) holds a store it cannot read: {err} "
                "Choose a fresh `dirpath`, or repair or remove that store."
            )
        here = dirpath.resolve()
        resumed = self._resumed_dirpath is not None and self._resumed_dirpath.resolve() == here
        if not entries or resumed or self.overwrite or here in self._written:
            return None
        epochs = sorted({e.epoch for e in entries})
        return (
            f"TracInCheckpoint(dirpath={str(dirpath)!r}) already holds {len(entries)} recorded "
            f"checkpoints (epochs {epochs[:10]}) from another run, and this fit is not a resume "
            "of that run, so training would replace them. Pass overwrite=True to replace them, "
            "choose a fresh `dirpath`, or resume that run with "
            "trainer.fit(..., ckpt_path=<its Lightning checkpoint>)."
        )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and not trainer.fast_dev_run:
            store = self.store
            remove_stale_temporaries(store.dirpath)  # debris of writes a crash interrupted
            # epochs from here on are (re)done by this run: forget what an earlier run left there
            store.truncate(trainer.current_epoch)

    # ------------------------------------------------------------------ timing
    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing: checkpoints are taken at the end of training epochs."""

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing: checkpoints are taken during ``fit`` only."""

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record_due(trainer, pl_module)

    def record_due(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the current fit epoch now if the schedule asks for it and it is not recorded
        yet (idempotent; callers that read the store at the end of an epoch call it first, so
        the order of callbacks does not matter)."""
        if trainer.state.fn == TrainerFn.FITTING:
            self._maybe_run(trainer, pl_module, "fit", "train")

    @override
    def run(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        if not trainer.is_global_zero:
            return
        names = (
            self.names if self.names is not None else select_parameters(pl_module, self.parameters)
        )
        lr = learning_rates(pl_module, trainer.optimizers, names)
        epoch, step = trainer.current_epoch, trainer.global_step
        checkpoint = Checkpoint.from_module(pl_module, lr, names, epoch=epoch, step=step)
        store = self.store
        bad = checkpoint.non_finite()
        if bad:
            what = "learning rate" if any("=" in b for b in bad) else "weights"
            message = (
                f"TracInCheckpoint {self.name!r}: {stage} epoch {epoch}, step {step}: the "
                f"{what} {bad[:6]} are not finite (NaN or inf); "
            )
            if self.strict:
                raise NonFiniteError(
                    message + "nothing was recorded (strict=True). Lower the learning rate, clip "
                    "gradients, or fix the scheduler."
                )
            store.record_skipped(epoch, step, f"non-finite {what}: {bad[:6]}")
            if what not in self._warned:
                self._warned.add(what)
                rank_zero_warn(
                    message + "this checkpoint was skipped, not recorded (noted under 'skipped' "
                    f"in {store.manifest_path}); TracIn will use the other checkpoints. Pass "
                    "strict=True to stop instead."
                )
            return
        store.save(checkpoint)
        self._written.add(store.dirpath.resolve())

    # ------------------------------------------------------------------ resume
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": str(self.dirpath) if self.dirpath is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("dirpath")
        if saved is not None and not self._user_dirpath:
            self.dirpath = Path(saved)
        if saved is not None:
            self._resumed_dirpath = Path(saved)
