"""The two base layers of every lightning-xai callback.

* :class:`ScheduleCallback`, the schedule layer shared by every callback (``TracInCheckpoint``
  included): the stages it runs in, ``every_n_epochs`` with a run at the end of the last fit
  epoch whatever it says, the single skip predicate, ``name`` and tags, the reporter, the
  duplicate-name check, configuration checks before the first step (:meth:`check`), and the
  data it needs: probe splits and the training set, found in ``fit``, ``validate`` and ``test``.
* :class:`XAICallback`, the probe layer on top: fixed probe samples chosen once with a seed and
  kept in the checkpoint, and :meth:`~XAICallback.explain` run on global rank zero with the
  model in eval mode (each submodule's own mode restored) and gradients available.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate
from typing_extensions import override

from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.report import Reporter, log_dir_of
from lightning_xai.utilities.run_report import write_run_report
from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "STAGES",
    "ScheduleCallback",
    "TrainDataLike",
    "XAICallback",
    "check_adapter",
    "check_train_data",
]

Stage = Literal["fit", "validate", "test"]
Split = Literal["train", "val", "test"]
STAGES: tuple[str, ...] = ("fit", "validate", "test")
TrainDataLike = Dataset | DataLoader | None


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _first_loader(loaders: Any) -> Any:
    """The first loader of a loader collection (list, tuple or dict), or the loader itself."""
    if isinstance(loaders, Mapping):
        loaders = next(iter(loaders.values()), None)
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return loaders


# What this process has seen of the user's loaders, kept outside the callbacks so that they
# stay picklable for ``ddp_spawn``: the collate function serving each dataset (weakly keyed),
# and the train/val loaders of each trainer's last fit.
_COLLATE: dict[int, tuple[weakref.ref[Any], Any]] = {}
_LAST_FIT: dict[int, tuple[weakref.ref[Any], dict[str, Any]]] = {}


def _dataset(source: Any) -> Dataset | None:
    """The dataset behind a loader (or loader collection, or dataset); remembers the loader's
    ``collate_fn`` so probe samples are collated as the user's loader would."""
    loader = _first_loader(source)
    if isinstance(loader, DataLoader):
        try:
            _COLLATE[id(loader.dataset)] = (weakref.ref(loader.dataset), loader.collate_fn)
        except TypeError:  # a dataset that takes no weak references
            pass
        return loader.dataset
    if isinstance(loader, Dataset):
        return loader
    return None


def _collate_fn(dataset: Any) -> Any:
    entry = _COLLATE.get(id(dataset))
    if entry is not None and entry[0]() is dataset:
        return entry[1]
    return default_collate


def _remember_fit(trainer: pl.Trainer, split: str, loaders: Any) -> None:
    entry = _LAST_FIT.get(id(trainer))
    if entry is None or entry[0]() is not trainer:
        entry = (weakref.ref(trainer), {})
        _LAST_FIT[id(trainer)] = entry
    if loaders is not None:
        entry[1][split] = loaders
        _dataset(loaders)


def _last_fit(trainer: pl.Trainer, split: str) -> Any:
    entry = _LAST_FIT.get(id(trainer))
    return entry[1].get(split) if entry is not None and entry[0]() is trainer else None


def check_adapter(adapter: object, example: str = "BatchAdapter(inputs=0, labels=1)") -> None:
    """Reject an ``adapter=`` that is neither ``None`` nor a :class:`BatchAdapter`."""
    from lightning_xai.utilities.batches import BatchAdapter

    if adapter is not None and not isinstance(adapter, BatchAdapter):
        raise MisconfigurationException(
            f"`adapter` must be a BatchAdapter or None, got {type(adapter).__name__}; e.g. "
            f"adapter={example}."
        )


def check_train_data(train_data: object) -> None:
    """Reject a ``train_data=`` that is neither ``None``, a Dataset nor a DataLoader."""
    if train_data is not None and not isinstance(train_data, (Dataset, DataLoader)):
        raise MisconfigurationException(
            f"`train_data` must be a Dataset or a DataLoader, got {type(train_data).__name__}."
        )


class ScheduleCallback(Callback):
    """The schedule layer: when a lightning-xai callback runs, under which name, with which data.

    Args:
        stages: the trainer entry points in which the callback runs, any of
            ``("fit", "validate", "test")``. During ``fit`` it runs after validation epochs (after
            training epochs when there is no validation).
        every_n_epochs: during ``fit``, run after every n-th epoch; ``None`` runs only after the
            last one. The last fit epoch always runs, also when early stopping or ``max_steps``
            ends the fit.
        name: folder under ``<log_dir>/xai/`` and middle part of every tag; defaults to the
            snake_case class name. Two callbacks on one trainer need different names.
        verbose: print one line at the end of each stage with the headline figures and where
            the files are.
        strict: raise a ``ValueError`` on a non-finite value instead of warning once and
            skipping it.

    Subclasses implement :meth:`run` (and, for configuration errors knowable before training,
    :meth:`check`).
    """

    def __init__(
        self,
        stages: Sequence[Stage] = STAGES,
        every_n_epochs: int | None = 1,
        name: str | None = None,
        verbose: bool = True,
        strict: bool = False,
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
        check_positive_int(
            "every_n_epochs", every_n_epochs, allow_none=True, error=MisconfigurationException
        )
        self.stages = tuple(stages)
        for flag, value in (("verbose", verbose), ("strict", strict)):
            if not isinstance(value, bool):
                raise MisconfigurationException(f"`{flag}` must be True or False, got {value!r}.")
        self.every_n_epochs = every_n_epochs
        self.verbose = verbose
        self.strict = strict
        self._name = name or _snake_case(type(self).__name__)
        self._headline: dict[str, float] = {}
        self._restored: tuple[int, int] | None = None  # (epoch, global step) of an evaluated ckpt
        self._last_run: tuple[str, int, int] | None = None

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        """Folder and tag component of this callback (``name=``, or the snake_case class name)."""
        return self._name

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self._name, stages=self.stages)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restored = None  # set again by on_load_checkpoint when a checkpoint is evaluated
        self._last_run = None  # every trainer entry point runs afresh
        twins = [
            c
            for c in trainer.callbacks  # type: ignore[attr-defined]
            if isinstance(c, ScheduleCallback) and c.name == self.name
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
        return Reporter(
            trainer,
            self.name,
            strict=self.strict,
            on_scalars=self._remember,
            epoch=self.epoch(trainer),
        )

    def _remember(self, values: Mapping[str, float], step: int) -> None:
        self._headline.update(values)

    def summary_line(self, trainer: pl.Trainer, stage: str) -> str | None:
        """The console line of this stage: its headline figures and where its files are, or
        ``None`` when it logged nothing."""
        prefix = f"{stage}/{self.name}/"
        figures = {k[len(prefix) :]: v for k, v in self._headline.items() if k.startswith(prefix)}
        folder = log_dir_of(trainer) / "xai" / self.name
        if not figures and not folder.is_dir():
            return None
        shown = ", ".join(f"{k}={v:.4g}" for k, v in figures.items()) or "pictures and files"
        return f"{type(self).__name__} {self.name!r} ({stage}): {shown}; files in {folder}"

    def step(self, trainer: pl.Trainer) -> int:
        """The x-axis value of everything this callback logs: ``trainer.global_step``, or, when
        validating or testing a checkpoint (``ckpt_path=``), the checkpoint's global step."""
        if self._restored is not None and trainer.state.fn != TrainerFn.FITTING:
            return self._restored[1]
        return int(trainer.global_step)

    def epoch(self, trainer: pl.Trainer) -> int:
        """The epoch that file names and captions state: ``trainer.current_epoch``, or the
        checkpoint's epoch when validating or testing a checkpoint."""
        if self._restored is not None and trainer.state.fn != TrainerFn.FITTING:
            return self._restored[0]
        return int(trainer.current_epoch)

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._restored = (int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0)))

    # ------------------------------------------------------------------ checks before work
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the configuration against the real model and data before the first step.

        Called on every rank once per trainer entry point in ``stages`` (at ``on_fit_start``,
        or the start of ``validate``/``test``), with the model on its device. Raise a
        :class:`MisconfigurationException` naming the argument, the value and the fix.
        """

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "fit" in self.stages and not trainer.fast_dev_run:
            self.check(trainer, pl_module, "fit")

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (
            trainer.state.fn == TrainerFn.VALIDATING
            and "validate" in self.stages
            and not trainer.fast_dev_run
        ):
            self.check(trainer, pl_module, "validate")

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "test" in self.stages and not trainer.fast_dev_run:
            self.check(trainer, pl_module, "test")

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

    @staticmethod
    def is_last_fit_epoch(trainer: pl.Trainer) -> bool:
        """Whether the running fit epoch is the last one (``max_epochs`` or ``max_steps``)."""
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs:
            return True
        max_steps = trainer.max_steps
        return max_steps is not None and 0 < max_steps <= trainer.global_step

    def should_skip(self, trainer: pl.Trainer, stage: str) -> bool:
        """The single "should I run now?" predicate.

        Skips the sanity check, ``fast_dev_run``, stages not selected, ``fit`` epochs that are
        neither a multiple of ``every_n_epochs`` nor the last one, and a second run at the same
        stage, epoch and step.
        """
        if trainer.sanity_checking or trainer.fast_dev_run:
            return True
        if stage not in self.stages:
            return True
        if stage == "fit" and not self.is_last_fit_epoch(trainer):
            n = self.every_n_epochs
            if n is None or (trainer.current_epoch + 1) % n != 0:
                return True
        return self._last_run == (stage, int(trainer.current_epoch), int(trainer.global_step))

    def run(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        """Do the work of one scheduled moment; called on every rank. Implemented by
        subclasses. ``split`` is where probe samples come from: ``"val"``, ``"test"`` or, in a
        fit without validation, ``"train"``."""
        raise NotImplementedError

    def _maybe_run(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        if self.should_skip(trainer, stage):
            return
        self._last_run = (stage, int(trainer.current_epoch), int(trainer.global_step))
        self.run(trainer, pl_module, stage, split)

    @staticmethod
    def _validates(trainer: pl.Trainer) -> bool:
        source = trainer.fit_loop.epoch_loop.val_loop._data_source
        return (
            bool(trainer.limit_val_batches)
            and source.is_defined()
            and (source.instance is not None)
        )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _remember_fit(trainer, "train", trainer.train_dataloader)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            _remember_fit(trainer, "val", trainer.val_dataloaders)
        self._maybe_run(trainer, pl_module, self.current_stage(trainer), "val")

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._validates(trainer):
            self._maybe_run(trainer, pl_module, "fit", "train")

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._maybe_run(trainer, pl_module, "test", "test")

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The last-epoch rule: when the fit ended before its last epoch ran (early stopping,
        ``max_steps``, a validation interval), run once now on its final weights."""
        if "fit" not in self.stages or trainer.fast_dev_run or trainer.global_step == 0:
            return
        last = self._last_run
        if last is not None and last[0] == "fit" and last[2] == int(trainer.global_step):
            return
        self._last_run = ("fit", int(trainer.current_epoch), int(trainer.global_step))
        self.run(trainer, pl_module, "fit", "val" if self._validates(trainer) else "train")

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """At the end of every ``fit``, ``validate`` and ``test``: one console line per callback
        (``verbose=False`` silences it), in the manner of ``ModelCheckpoint(verbose=True)``;
        then the last lightning-xai callback on the trainer writes the run report
        (``<log_dir>/xai/report.html`` and ``report.md``)."""
        entry = self.current_stage(trainer)
        if self.verbose and trainer.is_global_zero and entry in self.stages:
            line = self.summary_line(trainer, entry)
            if line is not None:
                rank_zero_info(line)
        self._headline = {}
        ours = [c for c in trainer.callbacks if isinstance(c, ScheduleCallback)]  # type: ignore[attr-defined]
        if ours and ours[-1] is self and trainer.is_global_zero and not trainer.fast_dev_run:
            write_run_report(trainer)  # the last of our callbacks: everything has been written

    # ------------------------------------------------------------------ data
    def dataset_of(self, trainer: pl.Trainer, split: Split) -> Dataset:
        """The dataset behind the trainer's ``split`` dataloader, found also before the loop
        has loaded it (from the datamodule, the LightningModule or the loaders passed in).

        ``"train"`` is resolved by :meth:`train_dataset`.
        """
        if split == "train":
            return self.train_dataset(trainer)
        loaded = trainer.val_dataloaders if split == "val" else trainer.test_dataloaders
        dataset = _dataset(loaded)
        if dataset is None:
            if split == "val":
                fitting = trainer.state.fn == TrainerFn.FITTING
                loop = trainer.fit_loop.epoch_loop.val_loop if fitting else trainer.validate_loop
            else:
                loop = trainer.test_loop
            source = loop._data_source
            if source.instance is not None and source.is_defined():
                dataset = _dataset(source.dataloader())
        if dataset is None and split == "val":
            dataset = _dataset(_last_fit(trainer, "val"))  # e.g. at test, after a fit
        if dataset is None:
            datamodule = trainer.datamodule
            dataset = getattr(datamodule, f"{split}_dataset", None) if datamodule else None
        if dataset is None:
            where = {"val": "validation", "test": "test"}[split]
            raise MisconfigurationException(
                f"{type(self).__name__} found no {where} data for its probe samples: pass a "
                f"{where} dataloader to the trainer (or a datamodule with `{split}_dataloader`), "
                f"or remove the stage from `stages`."
            )
        return dataset

    def train_dataset(self, trainer: pl.Trainer, train_data: TrainDataLike = None) -> Dataset:
        """The training set, in ``fit``, ``validate`` and ``test`` alike, from the first of:

        1. ``train_data`` (a Dataset or DataLoader), or the callback's ``train_data`` attribute;
        2. the datamodule's ``train_dataloader()``, whatever its attribute names (calling its
           ``setup("fit")`` first when needed);
        3. the train loader of this trainer's running or last fit;
        4. the LightningModule's own ``train_dataloader()``.

        Raises:
            MisconfigurationException: naming ``train_data=`` when none is found.
        """
        explicit = train_data if train_data is not None else getattr(self, "train_data", None)
        if explicit is not None:
            dataset = _dataset(explicit)
            if dataset is None:
                raise MisconfigurationException(
                    f"`train_data` must be a Dataset or a DataLoader, got "
                    f"{type(explicit).__name__}."
                )
            return dataset
        datamodule = trainer.datamodule
        if datamodule is not None and is_overridden("train_dataloader", datamodule):
            try:
                dataset = _dataset(datamodule.train_dataloader())
            except Exception:  # noqa: BLE001 - its splits may need setup("fit") first
                datamodule.setup("fit")
                dataset = _dataset(datamodule.train_dataloader())
            if dataset is not None:
                return dataset
        for loaders in (trainer.train_dataloader, _last_fit(trainer, "train")):
            dataset = _dataset(loaders)
            if dataset is not None:
                return dataset
        source = trainer.fit_loop._data_source
        if (
            trainer.state.fn == TrainerFn.FITTING
            and source.instance is not None
            and source.is_defined()
        ):
            dataset = _dataset(source.dataloader())
            if dataset is not None:
                return dataset
        module = trainer.lightning_module
        if module is not None and is_overridden("train_dataloader", module):
            dataset = _dataset(module.train_dataloader())
            if dataset is not None:
                return dataset
        raise MisconfigurationException(
            f"{type(self).__name__} needs the training set and found none: no datamodule with "
            "`train_dataloader()`, and this trainer has not run `fit`. Pass it: "
            f"{type(self).__name__}(train_data=<Dataset or DataLoader>)."
        )


class XAICallback(ScheduleCallback):
    """The probe layer: explain fixed probe samples during ``fit``, ``validate`` and ``test``.

    Args:
        stages: the trainer entry points in which the callback runs, any of
            ``("fit", "validate", "test")``. During ``fit`` it runs after validation epochs.
        every_n_epochs: during ``fit``, run after every n-th epoch (and after the last one).
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
        every_n_epochs: int | None = 1,
        num_samples: int = 16,
        seed: int = 0,
        name: str | None = None,
        verbose: bool = True,
        strict: bool = False,
    ) -> None:
        super().__init__(
            stages=stages, every_n_epochs=every_n_epochs, name=name, verbose=verbose, strict=strict
        )
        check_positive_int("num_samples", num_samples, error=MisconfigurationException)
        self.num_samples = num_samples
        self.seed = seed
        self.probe_indices: dict[str, list[int]] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self._name, stages=self.stages, seed=self.seed)

    # ------------------------------------------------------------------ probes
    def probe_batch(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        split: str,
        limit: int | None = None,
    ) -> Any:
        """The fixed probe samples of ``split`` ("val", "test" or "train"), collated, on the
        module's device; the first ``limit`` of them when given (for checks).

        Indices are drawn once with ``seed`` and kept in :attr:`probe_indices` (and thus in the
        checkpoint), so every epoch and a resumed run explain the same examples.
        """
        dataset = self.dataset_of(trainer, split)  # type: ignore[arg-type]
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise MisconfigurationException(
                f"{type(self).__name__}: the {split} dataset is empty; there is nothing to explain."
            )
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
        return self.collate(trainer, pl_module, dataset, indices[:limit])

    @staticmethod
    def collate(
        trainer: pl.Trainer, pl_module: pl.LightningModule, dataset: Any, indices: Sequence[int]
    ) -> Any:
        """Items ``indices`` of ``dataset``, collated by the ``collate_fn`` of the user's loader
        that serves it (when one was seen; else the default) and moved to the module's device."""
        samples = [dataset[i] for i in indices]
        batch = _collate_fn(dataset)(samples)
        if isinstance(samples[0], tuple) and isinstance(batch, list):
            batch = tuple(batch)
        return pl.utilities.move_data_to_device(batch, pl_module.device)

    def check_batch(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, limit: int = 2
    ) -> Any:
        """A small real probe batch for :meth:`check`: the first ``limit`` probe samples of the
        split ``stage`` explains."""
        split = {"fit": "val", "validate": "val", "test": "test"}[stage]
        if stage == "fit" and not self._validates(trainer):
            split = "train"
        return self.probe_batch(trainer, pl_module, split, limit=limit)

    # ------------------------------------------------------------------ running
    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        """Compute and report explanations of the probe ``batch``; implemented by subclasses.

        Called on global rank zero only, with ``pl_module`` in eval mode, inside
        :func:`~lightning_xai.utilities.grad_enabled`.
        """
        raise NotImplementedError

    @override
    def run(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        if not trainer.is_global_zero:
            return
        with eval_mode(pl_module), grad_enabled():
            batch = self.probe_batch(trainer, pl_module, split)
            self.explain(trainer, pl_module, stage, batch)

    # ------------------------------------------------------------------ resume
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"probe_indices": {k: list(v) for k, v in self.probe_indices.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.probe_indices = {k: list(v) for k, v in state_dict.get("probe_indices", {}).items()}
