"""The base class of every lightning-xai callback: when to run, on which samples, where to report.

Subclasses implement :meth:`XAICallback.explain`. The base class decides the moment (end of a
validation epoch during ``fit`` or ``validate``, end of the test epoch), skips the sanity check
and ``fast_dev_run``, picks fixed probe samples once with a seed, runs the work on global rank
zero only with the model in eval mode and gradients available, and keeps its state across a
resume.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate
from typing_extensions import override

from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.report import Reporter
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["STAGES", "XAICallback"]

Stage = Literal["fit", "validate", "test"]
STAGES: tuple[str, ...] = ("fit", "validate", "test")


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class XAICallback(Callback):
    """Base class for callbacks that explain a model during ``fit``, ``validate`` and ``test``.

    Args:
        stages: the trainer entry points in which the callback runs, any of
            ``("fit", "validate", "test")``. During ``fit`` it runs after validation epochs.
        every_n_epochs: during ``fit``, run after every n-th epoch only.
        num_samples: number of fixed probe samples taken from the val/test dataset.
        seed: seed of the probe-sample choice.
        name: folder under ``<log_dir>/xai/`` and middle part of every tag; defaults to the
            snake_case class name. Two callbacks on one trainer need different names.

    Subclasses implement :meth:`explain`. Example:

        >>> class CountProbes(XAICallback):
        ...     def explain(self, trainer, pl_module, stage, batch):
        ...         self.seen = (stage, len(batch[0]))
        >>> cb = CountProbes(num_samples=4, stages=("validate",))
        >>> cb.name
        'count_probes'
    """

    def __init__(
        self,
        stages: Sequence[Stage] = STAGES,
        every_n_epochs: int = 1,
        num_samples: int = 16,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if name is not None and (not isinstance(name, str) or not name.strip() or "/" in name):
            raise MisconfigurationException(
                f"`name` must be a non-empty string without '/', got {name!r}; "
                "e.g. name='attribution_gradcam'."
            )
        if isinstance(stages, str):
            stages = (stages,)
        unknown = [s for s in stages if s not in STAGES]
        if unknown or not stages:
            raise MisconfigurationException(
                f"`stages` must be a non-empty subset of {STAGES}, got {tuple(stages)!r}; "
                f"remove {unknown or 'nothing'} or use e.g. stages=('fit', 'test')."
            )
        check_positive_int("every_n_epochs", every_n_epochs, error=MisconfigurationException)
        check_positive_int("num_samples", num_samples, error=MisconfigurationException)
        self.stages = tuple(stages)
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.seed = seed
        self._name = name or _snake_case(type(self).__name__)
        self.probe_indices: dict[str, list[int]] = {}
        self._last_run: tuple[str, int, int] | None = None

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        """Folder and tag component of this callback (``name=``, or the snake_case class name)."""
        return self._name

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self._name, stages=self.stages, seed=self.seed)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        twins = [
            c
            for c in trainer.callbacks  # type: ignore[attr-defined]
            if isinstance(c, XAICallback) and c.name == self.name
        ]
        if len(twins) > 1:
            raise MisconfigurationException(
                f"{len(twins)} callbacks share `name={self.name!r}`, so their logs and files would "
                f"collide; give each its own name, e.g. name='{self.name}_2'."
            )

    def tag(self, stage: str, key: str) -> str:
        """The logger tag of ``key`` in ``stage``: ``"<stage>/<name>/<key>"``."""
        return f"{stage}/{self.name}/{key}"

    def reporter(self, trainer: pl.Trainer) -> Reporter:
        """A :class:`~lightning_xai.utilities.Reporter` writing under ``xai/<name>/``."""
        return Reporter(trainer, self.name)

    @staticmethod
    def step(trainer: pl.Trainer) -> int:
        """The x-axis value of everything this callback logs: ``trainer.global_step``."""
        return int(trainer.global_step)

    # ------------------------------------------------------------------ timing
    @staticmethod
    def current_stage(trainer: pl.Trainer) -> str:
        """``"fit"``, ``"validate"`` or ``"test"``, from the running trainer entry point."""
        fn = trainer.state.fn
        return {
            TrainerFn.FITTING: "fit",
            TrainerFn.VALIDATING: "validate",
            TrainerFn.TESTING: "test",
        }.get(fn, str(fn.value) if fn is not None else "fit")

    def should_skip(self, trainer: pl.Trainer, stage: str) -> bool:
        """The single "should I run now?" predicate.

        Skips the sanity check, ``fast_dev_run``, stages not selected, ``fit`` epochs that are
        not a multiple of ``every_n_epochs``, and a second run at the same stage, epoch and step.
        """
        if trainer.sanity_checking or trainer.fast_dev_run:
            return True
        if stage not in self.stages:
            return True
        if stage == "fit" and (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return True
        return self._last_run == (stage, int(trainer.current_epoch), int(trainer.global_step))

    # ------------------------------------------------------------------ probes
    @staticmethod
    def dataset_of(trainer: pl.Trainer, split: Literal["train", "val", "test"]) -> Dataset:
        """The dataset behind the trainer's ``split`` dataloader (or the datamodule's)."""
        loaders = {
            "train": lambda: trainer.train_dataloader,
            "val": lambda: trainer.val_dataloaders,
            "test": lambda: trainer.test_dataloaders,
        }[split]()
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        if isinstance(loaders, DataLoader):
            return loaders.dataset
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, f"{split}_dataset", None) if datamodule is not None else None
        if dataset is None:
            raise MisconfigurationException(
                f"No {split} dataset found for the probe samples: pass a `{split}` dataloader to the "
                f"trainer or give the datamodule a `{split}_dataset` attribute."
            )
        return dataset

    def probe_batch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> Any:
        """The fixed probe samples of ``split`` ("val" or "test"), collated, on the module's device.

        Indices are drawn once with ``seed`` and kept in :attr:`probe_indices` (and thus in the
        checkpoint), so every epoch and a resumed run explain the same examples.
        """
        dataset = self.dataset_of(trainer, split)  # type: ignore[arg-type]
        n = len(dataset)  # type: ignore[arg-type]
        indices = self.probe_indices.get(split)
        if indices is not None and indices and max(indices) >= n:
            rank_zero_warn(
                f"{type(self).__name__}: stored probe indices do not fit the {split} dataset of "
                f"size {n}; choosing new probe samples."
            )
            indices = None
        if indices is None:
            g = torch.Generator().manual_seed(self.seed)
            indices = torch.randperm(n, generator=g)[: self.num_samples].tolist()
            self.probe_indices[split] = indices
        samples = [dataset[i] for i in indices]
        batch = default_collate(samples)
        if isinstance(samples[0], tuple) and isinstance(batch, list):
            batch = tuple(batch)
        return pl.utilities.move_data_to_device(batch, pl_module.device)

    # ------------------------------------------------------------------ running
    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        """Compute and report explanations of the probe ``batch``; implemented by subclasses.

        Called on global rank zero only, with ``pl_module`` in eval mode, inside
        :func:`~lightning_xai.utilities.grad_enabled`.
        """
        raise NotImplementedError

    def _run(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        if self.should_skip(trainer, stage):
            return
        self._last_run = (stage, int(trainer.current_epoch), int(trainer.global_step))
        if not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            with grad_enabled():
                batch = self.probe_batch(trainer, pl_module, split)
                self.explain(trainer, pl_module, stage, batch)
        finally:
            pl_module.train(was_training)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module, self.current_stage(trainer), "val")

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module, "test", "test")

    # ------------------------------------------------------------------ resume
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"probe_indices": {k: list(v) for k, v in self.probe_indices.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.probe_indices = {k: list(v) for k, v in state_dict.get("probe_indices", {}).items()}
