"""Report TracIn influence at the end of fit and at test: suspicious training examples and the
proponents/opponents of fixed probe samples."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.utils.data import Subset
from typing_extensions import override

from lightning_xai.callbacks.base import Stage, XAICallback
from lightning_xai.callbacks.tracin_checkpoint import TracInCheckpoint
from lightning_xai.influence.checkpoints import CheckpointStore
from lightning_xai.influence.tracin import SelfInfluenceResult, TracIn
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.validation import check_positive_int
from lightning_xai.viz.examples import example_grid, influence_grid

__all__ = ["InfluenceLogger"]


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


class InfluenceLogger(XAICallback):
    """TracIn self-influence of the training set and influence on probe samples, at the end of
    ``fit`` and at ``test``.

    Uses the checkpoints recorded by :class:`~lightning_xai.callbacks.TracInCheckpoint` (add
    it to the trainer too, or pass ``checkpoints=`` a store directory). Logs, under
    ``<stage>/influence_logger/``:

    * ``self_influence``: a histogram over the training set;
    * ``most_self_influential``: an image grid of the ``top_n`` most self-influential training
      examples with label, prediction and score (known flipped labels framed in red);
    * ``proponents_opponents``: one row per probe sample (from the val set during ``fit``, the
      test set during ``test``) with its ``k`` proponents and ``k`` opponents;
    * ``mislabel_recall@10``/``@20`` when the training set marks flipped labels (``.flipped``);
    * files under ``<log_dir>/xai/influence_logger/<stage>/``: ``ranking_stepN.csv`` (every
      training example, most self-influential first) and ``influence_stepN.pt``.

    Under DDP the training set is split across ranks and the scores gathered, so each rank
    computes ``1/world_size`` of the gradients; every rank must run the callback.

    Args:
        stages: any of ``("fit", "validate", "test")``; ``fit`` runs once at the end of fit.
        num_samples: number of probe samples.
        k: proponents and opponents shown per probe sample.
        top_n: most self-influential training examples shown.
        checkpoints: a checkpoint store directory; default: the ``TracInCheckpoint`` callback's.
        loss_fn: per-sample loss ``loss_fn(outputs, target) -> (B,)``; default cross-entropy.
        targets: ``"labels"`` or ``"inputs"`` (label-free), see :class:`~lightning_xai.influence.TracIn`.
        parameters: parameters to use; default: those the checkpoints hold.
        projection_dim: optional random projection of the gradients.
        normalize: cosine variant for the probe influence (self-influence is never normalised).
        batch_size: gradient chunk size.
        seed: seed of the probe samples and of the projection.

    Example:
        >>> cb = InfluenceLogger(num_samples=2, k=3)
        >>> cb.name, cb.stages
        ('influence_logger', ('fit', 'test'))
    """

    def __init__(
        self,
        stages: Sequence[Stage] = ("fit", "test"),
        num_samples: int = 4,
        k: int = 4,
        top_n: int = 16,
        checkpoints: str | os.PathLike[str] | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        targets: Literal["labels", "inputs"] = "labels",
        parameters: str | Sequence[str] | None = None,
        projection_dim: int | None = None,
        normalize: bool = False,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(stages=stages, every_n_epochs=1, num_samples=num_samples, seed=seed)
        for name, value in (("k", k), ("top_n", top_n), ("batch_size", batch_size)):
            check_positive_int(name, value, error=MisconfigurationException)
        if targets not in ("labels", "inputs"):
            raise MisconfigurationException(
                f"`targets` must be 'labels' or 'inputs', got {targets!r}."
            )
        if loss_fn is not None and not callable(loss_fn):
            raise MisconfigurationException(f"`loss_fn` must be callable or None, got {loss_fn!r}.")
        check_positive_int(
            "projection_dim", projection_dim, allow_none=True, error=MisconfigurationException
        )
        self.k = k
        self.top_n = top_n
        self.checkpoints = checkpoints
        self.loss_fn = loss_fn if loss_fn is not None else _cross_entropy
        self.targets = targets
        self.parameters = parameters
        self.projection_dim = projection_dim
        self.normalize = normalize
        self.batch_size = batch_size

    # ------------------------------------------------------------------ setup
    def _store(self, trainer: pl.Trainer) -> CheckpointStore | None:
        if self.checkpoints is not None:
            return CheckpointStore(self.checkpoints)
        recorders = [cb for cb in trainer.callbacks if isinstance(cb, TracInCheckpoint)]  # type: ignore[attr-defined]
        if recorders and recorders[0].dirpath is not None:
            return recorders[0].store
        return None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.checkpoints is None and not any(
            isinstance(cb, TracInCheckpoint) for cb in trainer.callbacks
        ):  # type: ignore[attr-defined]
            raise MisconfigurationException(
                "InfluenceLogger needs TracIn checkpoints: add a TracInCheckpoint callback to the "
                "trainer, or pass `checkpoints=` the directory of a checkpoint store."
            )

    # ------------------------------------------------------------------ timing
    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.current_stage(trainer) == "validate":
            self._influence(trainer, pl_module, "validate", "val")

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._influence(trainer, pl_module, "test", "test")

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._influence(trainer, pl_module, "fit", "val")

    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        """Not used: influence is sharded over all ranks (see :meth:`on_fit_end`)."""

    # ------------------------------------------------------------------ running (all ranks)
    def _influence(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, split: str
    ) -> None:
        if self.should_skip(trainer, stage):
            return
        trainer.strategy.barrier("influence_logger")  # rank zero has finished writing checkpoints
        store = self._store(trainer)
        if store is None or len(store) == 0:
            rank_zero_warn(
                f"InfluenceLogger: no TracIn checkpoints found ({store}); nothing to report."
            )
            return
        try:
            train = self.dataset_of(trainer, "train")
        except MisconfigurationException as err:
            rank_zero_warn(f"InfluenceLogger: skipped at {stage}: {err}")
            return
        n = len(train)  # type: ignore[arg-type]
        world, rank = trainer.world_size, trainer.global_rank
        size = math.ceil(n / world)
        lo, hi = min(rank * size, n), min((rank + 1) * size, n)
        if hasattr(train, "tensors"):
            shard: Any = tuple(t[lo:hi] for t in train.tensors)
        else:
            shard = Subset(train, range(lo, hi))
        options: dict[str, Any] = dict(
            parameters=self.parameters
            if self.parameters is not None
            else list(store.entries[-1].params),
            projection_dim=self.projection_dim,
            batch_size=self.batch_size,
            targets=self.targets,
            seed=self.seed,
            show_progress=trainer.is_global_zero and trainer.progress_bar_callback is not None,
            device=pl_module.device,
        )
        tracin = TracIn(pl_module, store, self.loss_fn, **options)
        cosine = (
            TracIn(pl_module, store, self.loss_fn, normalize=True, **options)
            if self.normalize
            else tracin
        )
        with grad_enabled():
            probes = self.probe_batch(trainer, pl_module, split)
            m = len(probes[0] if isinstance(probes, (tuple, list)) else probes)
            local_self = tracin.self_influence(shard).scores if hi > lo else torch.zeros(0)
            local_inf = cosine.influence(probes, shard).scores if hi > lo else torch.zeros(m, 0)
        self_scores = self._gather(trainer, local_self[None], size, n)[0]
        influence = self._gather(trainer, local_inf, size, n)
        if trainer.is_global_zero:
            self._report(
                trainer,
                pl_module,
                stage,
                train,
                probes,
                SelfInfluenceResult(self_scores),
                influence,
            )

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
    def _predict(self, pl_module: pl.LightningModule, x: Tensor) -> list[str]:
        if self.targets == "inputs":
            return [""] * len(x)
        with torch.no_grad():
            was_training = pl_module.training
            pl_module.eval()
            try:
                out = pl_module(x.to(pl_module.device))
            finally:
                pl_module.train(was_training)
        if out.dim() != 2:
            return [""] * len(x)
        return [f" p={int(p)}" for p in out.argmax(1).tolist()]

    def _report(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        stage: str,
        train: Any,
        probes: Any,
        self_inf: SelfInfluenceResult,
        influence: Tensor,
    ) -> None:
        rep, step = self.reporter(trainer), self.step(trainer)
        n = len(self_inf.scores)
        ranking = self_inf.ranking().tolist()
        labelled = self.targets == "labels"
        flipped = getattr(train, "flipped", None)

        def item(i: int) -> tuple[Tensor, str]:
            sample = train[i]
            x = sample[0] if isinstance(sample, (tuple, list)) else sample
            label = f" y={int(sample[1])}" if labelled and isinstance(sample, (tuple, list)) else ""
            return x, label

        rep.log_histogram(self.tag(stage, "self_influence"), self_inf.scores, step)
        top = ranking[: min(self.top_n, n)]
        xs, labels = zip(*(item(i) for i in top))
        preds = self._predict(pl_module, torch.stack(xs))
        captions = [
            f"#{i}{lab}{p} s={float(self_inf.scores[i]):.3g}"
            for i, lab, p in zip(top, labels, preds)
        ]
        marks = [bool(flipped[i]) for i in top] if flipped is not None else None
        rep.log_image(
            self.tag(stage, "most_self_influential"),
            example_grid(
                torch.stack(xs),
                captions,
                highlight=marks,
                title="most self-influential training examples",
            ),
            step,
        )
        if flipped is not None and bool(torch.as_tensor(flipped).any()):
            recalls = {
                self.tag(stage, f"mislabel_recall@{p}"): self_inf.recall(flipped, p / 100)
                for p in (10, 20)
            }
            rep.log_scalars(recalls, step)

        k = min(self.k, n)
        px = probes[0] if isinstance(probes, (tuple, list)) else probes
        pro_s, pro_i = torch.topk(influence, k, dim=1)
        opp_s, opp_i = torch.topk(influence, k, dim=1, largest=False)
        probe_labels = [f" y={int(t)}" for t in probes[1]] if labelled else [""] * len(px)
        probe_caps = [
            f"probe{lab}{p}" for lab, p in zip(probe_labels, self._predict(pl_module, px))
        ]

        def row(indices: Tensor, scores: Tensor, sign: str) -> tuple[Tensor, list[str]]:
            cells = [item(int(i)) for i in indices]
            return torch.stack([c[0] for c in cells]), [
                f"{sign}#{int(i)}{c[1]} {float(s):.2g}" for i, c, s in zip(indices, cells, scores)
            ]

        pros = [row(pro_i[m], pro_s[m], "+") for m in range(len(px))]
        opps = [row(opp_i[m], opp_s[m], "-") for m in range(len(px))]
        rep.log_image(
            self.tag(stage, "proponents_opponents"),
            influence_grid(
                px.cpu(),
                [p[0] for p in pros],
                [o[0] for o in opps],
                probe_caps,
                [p[1] for p in pros],
                [o[1] for o in opps],
                title="probe | proponents (+) | opponents (-)",
            ),
            step,
        )

        rows = []
        for rank, i in enumerate(ranking):
            entry: dict[str, Any] = {
                "rank": rank,
                "index": i,
                "self_influence": float(self_inf.scores[i]),
            }
            if labelled:
                entry["label"] = int(train[i][1])
            if flipped is not None:
                entry["flipped"] = int(bool(flipped[i]))
            rows.append(entry)
        rep.save(f"{stage}/ranking_step{step:06d}.csv", rows)
        rep.save(
            f"{stage}/influence_step{step:06d}.pt",
            {
                "self_influence": self_inf.scores,
                "probe_split": "val" if stage == "fit" else stage,
                "probe_indices": torch.tensor(
                    self.probe_indices.get("val" if stage in ("fit", "validate") else "test", [])
                ),
                "influence": influence,
            },
        )
