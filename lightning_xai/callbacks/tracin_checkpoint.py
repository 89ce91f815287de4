"""Record the checkpoints TracIn needs while the model trains."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from lightning_xai.callbacks.base import ScheduleCallback
from lightning_xai.influence.checkpoints import Checkpoint, CheckpointStore, learning_rates
from lightning_xai.influence.per_sample_grads import select_parameters
from lightning_xai.utilities.report import log_dir_of

__all__ = ["TracInCheckpoint"]


class TracInCheckpoint(ScheduleCallback):
    """Save the tracked parameters and the current learning rate(s) every ``n`` training epochs
    and at the end of the last one.

    Each save is a :class:`~lightning_xai.influence.CheckpointStore` entry: the ``.pt`` file and
    then ``manifest.json`` are written atomically, so an interrupted run leaves no half file
    that a reader trusts. On resume, entries from the epoch training restarts at onwards are
    dropped and re-recorded, so no epoch is missing or duplicated; the directory is kept in the
    callback state, so a resumed run (even with a new logger version) continues the same store.
    Under DDP only global rank zero writes. Read the result with
    :class:`~lightning_xai.influence.TracIn` (``TracIn(model, callback.dirpath, loss_fn)``).

    Saves happen at the end of training epochs (never after a mid-epoch validation); the end of
    the last fit epoch is always recorded, also when early stopping or ``max_steps`` ends the
    fit on an epoch that ``every_n_epochs`` would skip.

    Args:
        every_n_epochs: save after every n-th training epoch; ``None``: only after the last.
        dirpath: the store's directory; default ``<log_dir>/xai/tracin/checkpoints`` (with
            ``name=``: ``<log_dir>/xai/<name>/checkpoints``).
        parameters: parameters to record (names relative to the LightningModule): ``None``
            for all trainable ones, ``"last"`` for the last layer, names or glob patterns.
            Buffers are always recorded.
        name: the callback's name (two recorders on one trainer need different names).

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
    ) -> None:
        super().__init__(
            stages=("fit",), every_n_epochs=every_n_epochs, name=name or "tracin_checkpoint"
        )
        if parameters is not None and not (
            isinstance(parameters, str)
            or (isinstance(parameters, Sequence) and all(isinstance(p, str) for p in parameters))
        ):
            raise MisconfigurationException(
                "`parameters` must be None, 'all', 'last', a name/glob pattern or a list of "
                f"them; got {parameters!r}."
            )
        self.parameters = parameters
        self._folder = "tracin" if name is None else name
        self._user_dirpath = dirpath is not None
        self.dirpath: Path | None = Path(dirpath) if dirpath is not None else None
        self.names: list[str] | None = None

    @property
    def store(self) -> CheckpointStore:
        """The checkpoint store (available once ``fit`` has set the directory up)."""
        if self.dirpath is None:
            raise MisconfigurationException(
                "TracInCheckpoint has no directory yet: it is set in `setup` of `trainer.fit`, or "
                "pass `dirpath=`."
            )
        return CheckpointStore(self.dirpath)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.dirpath is None:
            default = str(log_dir_of(trainer) / "xai" / self._folder / "checkpoints")
            # every rank must read the store rank zero writes: take rank zero's directory
            self.dirpath = Path(trainer.strategy.broadcast(default, src=0))

    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        try:
            self.names = select_parameters(pl_module, self.parameters)
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(
                f"TracInCheckpoint(parameters={self.parameters!r}): {err}"
            ) from err

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and not trainer.fast_dev_run:
            # epochs from here on are (re)done by this run: forget what an earlier run left there
            self.store.truncate(trainer.current_epoch)

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
        checkpoint = Checkpoint.from_module(
            pl_module, lr, names, epoch=trainer.current_epoch, step=trainer.global_step
        )
        self.store.save(checkpoint)

    # ------------------------------------------------------------------ resume
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": str(self.dirpath) if self.dirpath is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("dirpath")
        if saved is not None and not self._user_dirpath:
            self.dirpath = Path(saved)
