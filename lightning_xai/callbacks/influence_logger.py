"""Report TracIn influence: suspicious training examples and the proponents/opponents of fixed
probe samples, at the end of fit, at validate and at test."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from typing_extensions import override

from lightning_xai.callbacks._collective import agree, gather_objects
from lightning_xai.callbacks.base import (
    STAGES,
    Stage,
    TrainDataLike,
    XAICallback,
    check_adapter,
    check_train_data,
)
from lightning_xai.callbacks.tracin_checkpoint import TracInCheckpoint
from lightning_xai.influence.checkpoints import CheckpointEntry, CheckpointStore, check_compatible
from lightning_xai.influence.errors import CheckpointError, NonFiniteError
from lightning_xai.influence.per_sample_grads import select_parameters
from lightning_xai.influence.projection import GradientFeatures
from lightning_xai.influence.tracin import SelfInfluenceResult, TracIn
from lightning_xai.influence.trak import TRAK
from lightning_xai.utilities.batches import (
    AdaptedBatch,
    BatchAdapter,
    check_labels,
    resolve_callable,
)
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.validation import check_positive_int
from lightning_xai.viz.examples import KINDS, Kind, Vocabulary, example_grid, influence_grid

__all__ = ["InfluenceLogger"]

_FLIPPED, _WRONG = "red", "tab:orange"


def _cross_entropy(scores: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(scores, labels, reduction="none")


def _label_text(label: Tensor) -> str:
    if label.numel() == 1:
        value = label.item()
        return str(int(value)) if float(value).is_integer() else f"{value:.3g}"
    return str(int(label.reshape(-1).argmax()))


class InfluenceLogger(XAICallback):
    """TracIn self-influence of the training set and influence on probe samples.

    Uses the checkpoints recorded by :class:`~lightning_xai.callbacks.TracInCheckpoint` (add
    it to the trainer too, or pass ``checkpoints=`` a store directory). Runs at the end of the
    last fit epoch (or every ``every_n_epochs``), at ``validate`` and at ``test``; the training
    set is found in each (``train_data=``, the datamodule, or this trainer's last fit). Logs,
    under ``<stage>/<name>/``:

    * ``self_influence``: a histogram over the training set;
    * ``most_self_influential``: a grid of the ``top_n`` most self-influential training
      examples, captioned ``#index · self-influence score`` and ``label 3 · pred 3 (0.98)`` (frames: red for
      known flipped labels, orange where label and prediction differ; a legend says so);
    * ``proponents_opponents``: one row per probe sample (from the split being evaluated) with
      its ``k`` proponents and ``k`` opponents;
    * ``mislabel_recall_top10pct_higher_is_better``/``..._top20pct_...`` when the training set
      marks flipped labels (``.flipped``): the share of flipped labels among the 10% / 20% most
      self-influential training examples;
    * files under ``<log_dir>/xai/<name>/<stage>/``: ``ranking_stepN.csv`` (every training
      example, most self-influential first) and ``influence_stepN.pt``.

    Examples are drawn by kind: images (grey or colour, any size), 1-D signals, tabular rows,
    token ids (with ``vocabulary=``); the first explained input of each example is shown.
    Under DDP the training set is split across ranks and the scores gathered, so each rank
    computes ``1/world_size`` of the gradients; every rank must run the callback. Every rank
    uses rank zero's list of checkpoints and first checks that it sees the same manifest and
    the same files (name, size, content hash); a rank that cannot (no access to the store, a
    stale manifest, a missing or changed file), or that fails while computing, makes every rank
    stop with the same error instead of leaving the others waiting.

    Non-finite values: when the scores cannot be computed because data, gradients or
    checkpoint values are NaN or inf, the report of that moment is skipped with one warning
    naming the stage, epoch and what was non-finite; ``strict=True`` raises instead (also for
    non-finite values met while logging).

    Args:
        stages: any of ``("fit", "validate", "test")``.
        every_n_epochs: during ``fit``, run after every n-th epoch; ``None`` (default): only at
            the end of the last fit epoch.
        num_samples: number of probe samples.
        k: proponents and opponents shown per probe sample.
        top_n: most self-influential training examples shown.
        checkpoints: a checkpoint store directory; default: the ``TracInCheckpoint`` callback's.
        loss_fn: per-sample loss ``loss_fn(scores, target) -> (B,)`` (or its dotted import path);
            default cross-entropy with ``reduction="none"``.
        targets: ``"labels"`` or ``"inputs"`` (label-free), see :class:`~lightning_xai.influence.TracIn`.
        parameters: parameters to use; default: those the checkpoints hold.
        projection_dim: optional random projection of the gradients (``method="trak"``:
            default 512).
        normalize: cosine variant for the probe influence (self-influence is never normalised;
            TracIn only).
        method: ``"tracin"`` (default): :class:`~lightning_xai.influence.TracIn`;
            ``"trak"``: the TRAK-style estimator :class:`~lightning_xai.influence.TRAK`
            (damping chosen from the training features; self-influence is its leverage
            score). Under DDP each rank featurises its shard of the training set and the
            features are gathered, so the kernel is the single-process one.
        batch_size: gradient chunk size.
        seed: seed of the probe samples and of the projection.
        adapter: how batches are read and the model called
            (:class:`~lightning_xai.utilities.batches.BatchAdapter`); default ``BatchAdapter()``.
        train_data: the training set (a Dataset or DataLoader), when the trainer cannot provide
            it (e.g. ``trainer.test`` in a new trainer without a datamodule).
        vocabulary: token strings by id (a list or dict), for token inputs.
        kind: how examples are drawn: ``"auto"`` or one of ``"image"``, ``"signal"``,
            ``"tabular"``, ``"tokens"``.
        name: folder under ``<log_dir>/xai/`` and middle part of every tag.
        strict: raise on non-finite scores or values instead of warning and skipping.

    Example:
        >>> cb = InfluenceLogger(num_samples=2, k=3)
        >>> cb.name, cb.stages, cb.every_n_epochs
        ('influence_logger', ('fit', 'validate', 'test'), None)
    """

    def __init__(
        self,
        stages: Sequence[Stage] = STAGES,
        every_n_epochs: int | None = None,
        num_samples: int = 4,
        k: int = 4,
        top_n: int = 16,
        checkpoints: str | os.PathLike[str] | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | str | None = None,
        targets: Literal["labels", "inputs"] = "labels",
        parameters: str | Sequence[str] | None = None,
        projection_dim: int | None = None,
        normalize: bool = False,
        batch_size: int = 256,
        method: Literal["tracin", "trak"] = "tracin",
        seed: int = 0,
        adapter: BatchAdapter | None = None,
        train_data: TrainDataLike = None,
        vocabulary: Vocabulary = None,
        kind: Kind = "auto",
        name: str | None = None,
        strict: bool = False,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            stages=stages,
            every_n_epochs=every_n_epochs,
            num_samples=num_samples,
            seed=seed,
            name=name,
            verbose=verbose,
            strict=strict,
        )
        for option, value in (("k", k), ("top_n", top_n), ("batch_size", batch_size)):
            check_positive_int(option, value, error=MisconfigurationException)
        if not isinstance(normalize, bool):
            raise MisconfigurationException(
                f"`normalize` must be True or False, got {normalize!r}."
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise MisconfigurationException(f"`seed` must be an int, got {seed!r}.")
        if checkpoints is not None and (
            not isinstance(checkpoints, (str, os.PathLike)) or not str(checkpoints).strip()
        ):
            raise MisconfigurationException(
                f"`checkpoints` must be the directory of a checkpoint store (a path) or None, got "
                f"{checkpoints!r}."
            )
        if method not in ("tracin", "trak"):
            raise MisconfigurationException(f"`method` must be 'tracin' or 'trak', got {method!r}.")
        if method == "trak" and targets != "labels":
            raise MisconfigurationException(
                f"`method='trak'` uses class margins and needs targets='labels', got "
                f"targets={targets!r}; use method='tracin' for label-free influence."
            )
        if targets not in ("labels", "inputs"):
            raise MisconfigurationException(
                f"`targets` must be 'labels' or 'inputs', got {targets!r}."
            )
        loss = resolve_callable(loss_fn)
        if loss is not None and not callable(loss):
            raise MisconfigurationException(
                f"`loss_fn` must be a callable (scores, target) -> (B,), its dotted import path, "
                f"or None; got {loss_fn!r}."
            )
        check_positive_int(
            "projection_dim", projection_dim, allow_none=True, error=MisconfigurationException
        )
        check_adapter(adapter)
        check_train_data(train_data)
        if kind != "auto" and kind not in KINDS:
            raise MisconfigurationException(
                f"`kind` must be 'auto' or one of {KINDS}, got {kind!r}."
            )
        if vocabulary is not None and not isinstance(vocabulary, (Sequence, Mapping)):
            raise MisconfigurationException(
                f"`vocabulary` must be a list of token strings or a dict id -> string, got "
                f"{type(vocabulary).__name__}."
            )
        self.k = k
        self.top_n = top_n
        self.checkpoints = checkpoints
        self.loss_fn = loss if loss is not None else _cross_entropy
        self.targets = targets
        self.parameters = parameters
        self.projection_dim = projection_dim
        self.normalize = normalize
        self.method = method
        self.batch_size = batch_size
        self.adapter = adapter if adapter is not None else BatchAdapter()
        self.train_data = train_data
        self.vocabulary = vocabulary
        self.kind = kind
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ checkpoints
    @staticmethod
    def _recorders(trainer: pl.Trainer) -> list[TracInCheckpoint]:
        return [cb for cb in trainer.callbacks if isinstance(cb, TracInCheckpoint)]  # type: ignore[attr-defined]

    def _store(self, trainer: pl.Trainer) -> CheckpointStore | None:
        if self.checkpoints is not None:
            try:
                return CheckpointStore(self.checkpoints)
            except CheckpointError as err:
                raise MisconfigurationException(
                    f"{type(self).__name__}(checkpoints={str(self.checkpoints)!r}): {err}"
                ) from err
        recorders = self._recorders(trainer)
        if recorders and recorders[0].dirpath is not None:
            return recorders[0].store
        return None

    def _check_store(self, trainer: pl.Trainer, stage: str) -> None:
        recorders = self._recorders(trainer)
        if self.checkpoints is None:
            if not recorders:
                raise MisconfigurationException(
                    f"{type(self).__name__} needs TracIn checkpoints: add a TracInCheckpoint "
                    "callback to the trainer, or pass `checkpoints=` the directory of a "
                    "checkpoint store."
                )
            if stage == "fit":
                return  # the recorder writes them during this fit
            store = recorders[0].store
            where = f"the TracInCheckpoint directory {str(store.dirpath)!r}"
        else:
            path = Path(self.checkpoints)
            written_here = stage == "fit" and any(
                r.dirpath is not None and Path(r.dirpath).resolve() == path.resolve()
                for r in recorders
            )
            if written_here:
                return
            if not path.is_dir():
                raise MisconfigurationException(
                    f"`checkpoints={str(self.checkpoints)!r}` is not a directory; pass the "
                    "directory of a checkpoint store written by TracInCheckpoint, or leave "
                    "checkpoints=None and add a TracInCheckpoint callback."
                )
            store = CheckpointStore(path)
            where = f"`checkpoints={str(self.checkpoints)!r}`"
        try:
            entries = store.entries
        except (ValueError, OSError) as err:
            raise MisconfigurationException(f"{type(self).__name__}: {where}: {err}") from err
        if not entries:
            raise MisconfigurationException(
                f"{type(self).__name__}: {where} holds no checkpoints; record some with "
                "TracInCheckpoint during `fit` first, or point `checkpoints=` at a store that "
                "has them."
            )
        module = trainer.lightning_module
        missing = [p for p in self._names(module) if p not in entries[-1].params]
        if missing:
            raise MisconfigurationException(
                f"{type(self).__name__}(parameters={self.parameters!r}): the checkpoints in "
                f"{where} lack {missing[:4]}; they hold {list(entries[-1].params)[:4]}..."
            )
        try:  # every file complete and unchanged, and the newest one fits this model
            store.verify(entries)
            tracked = self._names(module) or list(entries[-1].params)
            latest = store.load(entries[-1])
            check_compatible(
                latest,
                module,
                tracked,
                f"The checkpoint file {str(store.dirpath / entries[-1].file)!r} "
                f"({entries[-1].describe()}) in {where}",
            )
            for entry in entries[:-1]:
                if set(entry.params) != set(entries[-1].params):
                    raise CheckpointError(
                        f"{where}: the {entry.describe()} holds parameters {list(entry.params)[:4]} "
                        f"but the newest holds {list(entries[-1].params)[:4]}; the store mixes "
                        "runs. Record the checkpoints of one run in a fresh directory."
                    )
        except (CheckpointError, NonFiniteError) as err:
            raise MisconfigurationException(f"{type(self).__name__}: {err}") from err

    def _names(self, pl_module: pl.LightningModule) -> list[str]:
        if self.parameters is None:
            return []
        try:
            return select_parameters(pl_module, self.parameters)
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(
                f"{type(self).__name__}(parameters={self.parameters!r}): {err}"
            ) from err

    # ------------------------------------------------------------------ checks before work
    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Every configuration check on every rank; one rank's failure stops every rank."""
        problem = None
        try:
            self._check(trainer, pl_module, stage)
        except MisconfigurationException as err:
            problem = str(err)
        except Exception as err:  # noqa: BLE001 - reported on every rank, not only this one
            problem = f"{type(err).__name__}: {err}"
        agree(trainer, problem, MisconfigurationException)

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._names(pl_module)
        self._check_store(trainer, stage)
        train = self.train_dataset(trainer)
        if len(train) == 0:  # type: ignore[arg-type]
            raise MisconfigurationException(
                f"{type(self).__name__}: the training set is empty; pass `train_data=` the "
                "examples whose influence should be measured."
            )
        batch = self.collate(trainer, pl_module, train, range(min(2, len(train))))  # type: ignore[arg-type]
        adapted = self._split(batch, pl_module, "a training batch")
        if self.targets == "labels" and adapted.labels is None:
            raise MisconfigurationException(
                f"{type(self).__name__}(targets='labels') needs labels, but the adapter found "
                f"none in a training batch (adapter={self.adapter!r}). Point the adapter at "
                "them, e.g. adapter=BatchAdapter(labels=1), or use targets='inputs' with a "
                "label-free `loss_fn`."
            )
        with eval_mode(pl_module), torch.no_grad():
            try:
                scores = adapted.call(pl_module)
            except Exception as err:  # noqa: BLE001 - a user model, any error
                raise MisconfigurationException(
                    f"{type(self).__name__}: calling the model on a training batch as "
                    f"adapter={self.adapter!r} says failed: {err}. Fix `adapter=` (inputs, "
                    "forward_kwargs, output)."
                ) from err
            if self.targets == "labels":
                try:
                    target = check_labels(adapted.labels, scores, source="adapter labels")  # type: ignore[arg-type]
                except ValueError as err:
                    raise MisconfigurationException(f"{type(self).__name__}: {err}") from err
            else:
                target = adapted.inputs[0]
            try:
                loss = self.loss_fn(scores, target)
            except Exception as err:  # noqa: BLE001 - a user loss, any error
                raise MisconfigurationException(
                    f"{type(self).__name__}: `loss_fn={self.loss_fn!r}` failed on two training "
                    f"samples (scores {tuple(scores.shape)}, target {tuple(target.shape)}): {err}"
                ) from err
        n = len(adapted)
        if not isinstance(loss, Tensor) or loss.shape != (n,):
            got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise MisconfigurationException(
                f"`loss_fn={getattr(self.loss_fn, '__name__', self.loss_fn)!r}` must return one "
                f"loss per sample, shape ({n},) on {n} training samples; got {got}. Use "
                "reduction='none', e.g. F.cross_entropy(scores, y, reduction='none')."
            )
        self._split(self.check_batch(trainer, pl_module, stage), pl_module, "a probe batch")

    def _split(self, batch: Any, pl_module: pl.LightningModule, what: str) -> AdaptedBatch:
        try:
            return self.adapter.split(batch, pl_module)
        except ValueError as err:
            raise MisconfigurationException(
                f"{type(self).__name__}: adapter={self.adapter!r} cannot read {what}: {err}"
            ) from err

    # ------------------------------------------------------------------ running (all ranks)
    def _plan(self, trainer: pl.Trainer) -> tuple[list[CheckpointEntry], list[Any], str | None]:
        """Rank zero's view: the checkpoints to use, the skipped moments, or why there are none
        to use (an error message)."""
        try:
            store = self._store(trainer)
            if store is None:
                return [], [], None
            return store.entries, store.skipped, None
        except (CheckpointError, MisconfigurationException, OSError) as err:
            return [], [], str(err)

    def _local_store(
        self, trainer: pl.Trainer, plan: list[CheckpointEntry]
    ) -> tuple[CheckpointStore | None, str | None]:
        """This rank's store pinned to rank zero's ``plan``, after checking that this rank sees
        the same manifest and the same files; or why it cannot proceed."""
        try:
            store = self._store(trainer)
        except MisconfigurationException as err:
            return None, str(err)
        if store is None:
            return (
                None,
                "this rank finds no checkpoint store (no TracInCheckpoint, no `checkpoints=`).",
            )
        where = f"the checkpoint store {str(store.dirpath)!r}"
        if not store.dirpath.is_dir():
            return None, (
                f"this rank cannot see {where} (no such directory) while rank 0 lists "
                f"{len(plan)} checkpoints; every rank needs the same store (a shared filesystem "
                "or a copy at the same path)."
            )
        try:
            own = store.entries
        except CheckpointError as err:
            return None, f"this rank cannot read {where}: {err}"
        if [e.fingerprint() for e in own] != [e.fingerprint() for e in plan]:
            mine = [e.file for e in own]
            theirs = [e.file for e in plan]
            return None, (
                f"this rank's manifest of {where} lists {mine[:6]} ({len(mine)}) but rank 0's "
                f"lists {theirs[:6]} ({len(theirs)}), or their sizes/hashes differ: a stale or "
                "different copy of the store. Give every rank the same store (a shared "
                "filesystem), or copy it again."
            )
        pinned = CheckpointStore(store.dirpath, entries=plan)
        try:
            pinned.verify()
        except CheckpointError as err:
            return None, f"on this rank, {err}"
        return pinned, None

    def _skip_warning(self, trainer: pl.Trainer, stage: str, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(
                f"{type(self).__name__} {self.name!r}: {stage} epoch {self.epoch(trainer)}: "
                f"{message}"
            )

    @override
    def run(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        if stage == "fit":  # this epoch's checkpoint first, whatever the callback order
            for recorder in self._recorders(trainer):
                recorder.record_due(trainer, pl_module)
        trainer.strategy.barrier("influence_logger")  # rank zero has finished writing checkpoints
        # which checkpoints: rank zero's list, used by every rank
        plan, skipped, problem = self._plan(trainer) if trainer.is_global_zero else ([], [], None)
        plan, skipped, problem = trainer.strategy.broadcast((plan, skipped, problem), src=0)
        agree(trainer, problem, MisconfigurationException, f"{type(self).__name__}: ")
        if skipped:
            self._skip_warning(
                trainer,
                stage,
                "skipped",
                f"the store lacks the checkpoints of epochs {[s.get('epoch') for s in skipped]} "
                f"(not recorded: {skipped[0].get('reason')}); influence uses the other "
                f"{len(plan)}.",
            )
        if not plan:  # the same decision on every rank
            if self.strict:
                raise NonFiniteError(
                    f"{type(self).__name__}: {stage} epoch {self.epoch(trainer)}: no TracIn "
                    "checkpoints to use (strict=True)."
                )
            self._skip_warning(
                trainer, stage, "empty", "no TracIn checkpoints found; nothing to report."
            )
            return
        store, problem = self._local_store(trainer, plan)
        agree(trainer, problem, MisconfigurationException, f"{type(self).__name__}: ")
        store = cast(CheckpointStore, store)  # agree() raised otherwise

        train = self.train_dataset(trainer)
        n = len(train)  # type: ignore[arg-type]
        world, rank = trainer.world_size, trainer.global_rank
        size = math.ceil(n / world)
        lo, hi = min(rank * size, n), min((rank + 1) * size, n)
        outcome: tuple[str, str] | None = None
        error: Exception | None = None
        probes: Any = None
        local_self = local_inf = torch.zeros(0)
        try:
            if hasattr(train, "tensors"):
                shard: Any = tuple(t[lo:hi] for t in train.tensors)
            else:
                shard = Subset(train, range(lo, hi))
            options: dict[str, Any] = dict(
                parameters=self.parameters
                if self.parameters is not None
                else list(plan[-1].params),
                projection_dim=self.projection_dim,
                batch_size=self.batch_size,
                targets=self.targets,
                seed=self.seed,
                show_progress=trainer.is_global_zero and trainer.progress_bar_callback is not None,
                device=pl_module.device,
                adapter=self.adapter,
            )
            if self.method == "trak":
                options["projection_dim"] = self.projection_dim or 512
                with eval_mode(pl_module), grad_enabled():
                    probes = self.probe_batch(trainer, pl_module, split)
                    trak = TRAK(pl_module, store, self.loss_fn, **options)
                    trak_local = trak.features(shard) if hi > lo else None
            else:
                tracin = TracIn(pl_module, store, self.loss_fn, **options)
                cosine = (
                    TracIn(pl_module, store, self.loss_fn, normalize=True, **options)
                    if self.normalize
                    else tracin
                )
                with eval_mode(pl_module), grad_enabled():
                    probes = self.probe_batch(trainer, pl_module, split)
                    m = len(self.adapter.split(probes, pl_module))
                    local_self = tracin.self_influence(shard).scores if hi > lo else torch.zeros(0)
                    local_inf = (
                        cosine.influence(probes, shard).scores if hi > lo else torch.zeros(m, 0)
                    )
        except NonFiniteError as err:
            outcome, error = ("non-finite", str(err)), err
        except Exception as err:  # noqa: BLE001 - reported on every rank, not only this one
            outcome, error = ("error", f"{type(err).__name__}: {err}"), err
        outcomes = gather_objects(trainer, outcome)
        failed = [(r, o) for r, o in enumerate(outcomes) if o is not None]
        if failed:
            prefix = lambda r: f"rank {r}: " if len(outcomes) > 1 else ""  # noqa: E731
            text = " | ".join(prefix(r) + o[1] for r, o in failed)
            if any(o[0] == "error" for _, o in failed):
                if len(outcomes) == 1 and error is not None:
                    raise error  # one process: the error as it is
                raise RuntimeError(
                    f"{type(self).__name__} {self.name!r} failed computing influence at {stage} "
                    f"epoch {self.epoch(trainer)}: {text}"
                ) from error
            if self.strict:
                raise NonFiniteError(
                    f"{type(self).__name__} {self.name!r}: {stage} epoch {self.epoch(trainer)}: "
                    f"{text} (strict=True)"
                ) from error
            self._skip_warning(
                trainer,
                stage,
                "non-finite",
                f"influence scores were not computed, the report is skipped: {text} "
                "(strict=True raises instead).",
            )
            return
        if self.method == "trak":
            self_scores, influence = self._trak_scores(
                trainer, pl_module, trak, trak_local, probes, size, n
            )
        else:
            self_scores = self._gather(trainer, local_self[None], size, n)[0]
            influence = self._gather(trainer, local_inf, size, n)
        if trainer.is_global_zero:
            with eval_mode(pl_module):
                self._report(
                    trainer,
                    pl_module,
                    stage,
                    split,
                    train,
                    probes,
                    SelfInfluenceResult(self_scores),
                    influence,
                )

    def _trak_scores(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        trak: TRAK,
        local: GradientFeatures | None,
        probes: Any,
        size: int,
        n: int,
    ) -> tuple[Tensor, Tensor]:
        """Each rank featurises its shard; the features are gathered, so every rank holds the
        training features of the whole set (as one process would) and scores the probes."""
        k = cast(int, trak.projection_dim)
        c = len(trak._sources)
        with eval_mode(pl_module), grad_enabled():
            blocks = []
            for i in range(c):
                feats = local.features[i] if local else torch.zeros(0, k)
                loss = local.extras["loss"][i] if local else torch.zeros(0)
                both = torch.cat([feats, loss[:, None]], dim=1).T.to(pl_module.device)
                blocks.append(self._gather(trainer, both, size, n))
            full = GradientFeatures(
                [b[:k].T.contiguous().float() for b in blocks],
                [1.0 / c] * c,
                [trak._source_key(s) for s in trak._sources],
                {**trak._feature_config(), "data": f"gathered {n}"},
                {"loss": [b[k].float() for b in blocks]},
            )
            self_scores = trak.self_influence(full).scores
            influence = trak.influence(probes, full).scores
        return self_scores, influence

    @staticmethod
    def _gather(trainer: pl.Trainer, local: Tensor, size: int, n: int) -> Tensor:
        """Concatenate per-rank ``(M, shard)`` blocks into ``(M, n)`` (every rank calls this)."""
        if trainer.world_size == 1:
            return local[:, :n].cpu()
        padded = local.new_zeros(local.shape[0], size)
        padded[:, : local.shape[1]] = local
        # Plain collective: Lightning's all_gather goes through the autograd-aware
        # torch.distributed.nn variant, which intermittently aborted gloo workers at exit.
        padded = padded.to(trainer.strategy.root_device).contiguous()
        blocks = [torch.empty_like(padded) for _ in range(trainer.world_size)]
        torch.distributed.all_gather(blocks, padded)
        return torch.cat(blocks, dim=1)[:, :n].cpu()

    # ------------------------------------------------------------------ reporting (rank zero)
    def _examples(
        self, pl_module: pl.LightningModule, batch: Any
    ) -> tuple[Tensor, list[str], list[bool]]:
        """The shown input of each example, ``label … · pred … (p)`` texts, and whether the
        label and the prediction differ."""
        adapted = self.adapter.split(batch, pl_module)
        shown = adapted.inputs[0].detach().cpu()
        n = len(adapted)
        labels = adapted.labels if self.targets == "labels" else None
        texts, wrong = [""] * n, [False] * n
        if labels is None:
            return shown, texts, wrong
        with torch.no_grad():
            scores = adapted.call(pl_module)
        scores = scores.detach().float().cpu() if isinstance(scores, Tensor) else None
        labels = labels.detach().cpu()
        for i in range(n):
            text = f"label {_label_text(labels[i])}"
            if scores is not None and scores.dim() == 2 and scores.shape[1] > 1:
                probs = scores[i].softmax(0)
                pred = int(probs.argmax())
                text += f" · pred {pred} ({float(probs[pred]):.2f})"
                wrong[i] = labels[i].numel() == 1 and pred != int(labels[i].reshape(-1)[0])
            elif scores is not None and scores.dim() in (1, 2) and scores[i].numel() == 1:
                prob = float(torch.sigmoid(scores[i].reshape(())))
                text += f" · pred {int(prob > 0.5)} ({max(prob, 1 - prob):.2f})"
            texts[i] = text
        return shown, texts, wrong

    def _legend(self, flipped: Any) -> dict[str, str]:
        legend = {}
        if flipped is not None:
            legend["known flipped label"] = _FLIPPED
        if self.targets == "labels":
            legend["label ≠ prediction"] = _WRONG
        return legend

    def _all_labels(self, pl_module: pl.LightningModule, train: Any) -> list[str] | None:
        if self.targets != "labels":
            return None
        out: list[str] = []
        for batch in DataLoader(train, batch_size=256):
            labels = self.adapter.split(batch, pl_module).labels
            if labels is None:
                return None
            out += [_label_text(t) for t in labels.cpu()]
        return out

    def _report(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        stage: str,
        split: str,
        train: Any,
        probes: Any,
        self_inf: SelfInfluenceResult,
        influence: Tensor,
    ) -> None:
        rep, step = self.reporter(trainer), self.step(trainer)
        n = len(self_inf.scores)
        ranking = self_inf.ranking().tolist()
        flipped = getattr(train, "flipped", None)
        draw = dict(kind=self.kind, vocabulary=self.vocabulary)
        legend = self._legend(flipped)

        def train_examples(indices: Sequence[int]) -> tuple[Tensor, list[str], list[bool]]:
            batch = self.collate(trainer, pl_module, train, [int(i) for i in indices])
            return self._examples(pl_module, batch)

        def frame(i: int, wrong: bool) -> str | None:
            if flipped is not None and bool(flipped[i]):
                return _FLIPPED
            return _WRONG if wrong else None

        rep.log_histogram(self.tag(stage, "self_influence"), self_inf.scores, step)
        top = ranking[: min(self.top_n, n)]
        xs, texts, wrong = train_examples(top)
        captions = [
            f"#{i} · self-influence {float(self_inf.scores[i]):.3g}" + (f"\n{t}" if t else "")
            for i, t in zip(top, texts)
        ]
        rep.log_image(
            self.tag(stage, "most_self_influential"),
            example_grid(
                xs,
                captions,
                highlight=[frame(i, w) for i, w in zip(top, wrong)],
                title="most self-influential training examples",
                legend=legend,
                **draw,
            ),
            step,
        )
        if flipped is not None and bool(torch.as_tensor(flipped).any()):
            recalls = {
                self.tag(stage, f"mislabel_recall_top{p}pct_higher_is_better"): self_inf.recall(
                    flipped, p / 100
                )
                for p in (10, 20)
            }
            rep.log_scalars(recalls, step)

        k = min(self.k, n)
        px, probe_texts, _ = self._examples(pl_module, probes)
        m = len(px)
        pro_s, pro_i = torch.topk(influence, k, dim=1)
        opp_s, opp_i = torch.topk(influence, k, dim=1, largest=False)
        order = torch.cat([pro_i, opp_i], dim=1)  # (m, 2k)
        cells, cell_texts, cell_wrong = train_examples(order.flatten().tolist())
        cells = cells.reshape(m, 2 * k, *cells.shape[1:])
        values = torch.cat([pro_s, opp_s], dim=1)
        captions_grid, marks = [], []
        for r in range(m):
            row_caps, row_marks = [], []
            for j in range(2 * k):
                flat = r * 2 * k + j
                i = int(order[r, j])
                text = cell_texts[flat]
                row_caps.append(
                    f"#{i} · influence {float(values[r, j]):+.2g}" + (f"\n{text}" if text else "")
                )
                row_marks.append(frame(i, cell_wrong[flat]))
            captions_grid.append(row_caps)
            marks.append(row_marks)
        rep.log_image(
            self.tag(stage, "proponents_opponents"),
            influence_grid(
                px,
                [c[:k] for c in cells],
                [c[k:] for c in cells],
                [f"probe\n{t}" if t else "probe" for t in probe_texts],
                [c[:k] for c in captions_grid],
                [c[k:] for c in captions_grid],
                title="probe | proponents (+) | opponents (-)",
                highlight=marks,
                legend=legend,
                **draw,
            ),
            step,
        )

        labels = self._all_labels(pl_module, train)
        rows = []
        for rank, i in enumerate(ranking):
            entry: dict[str, Any] = {
                "rank": rank,
                "index": i,
                "self_influence": float(self_inf.scores[i]),
            }
            if labels is not None:
                entry["label"] = labels[i]
            if flipped is not None:
                entry["flipped"] = int(bool(flipped[i]))
            rows.append(entry)
        rep.save(f"{stage}/ranking_step{step:06d}.csv", rows)
        rep.save(
            f"{stage}/influence_step{step:06d}.pt",
            {
                "self_influence": self_inf.scores,
                "probe_split": split,
                "probe_indices": torch.tensor(self.probe_indices.get(split, [])),
                "influence": influence,
            },
        )
