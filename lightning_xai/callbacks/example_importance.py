"""Log, for fixed probe samples, the training examples that explain their representation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.utils.data._utils.collate import default_collate
from typing_extensions import override

from lightning_xai.attribution.attributor import Attributor
from lightning_xai.callbacks.base import STAGES, Stage, XAICallback
from lightning_xai.callbacks.tracin_checkpoint import TracInCheckpoint
from lightning_xai.influence.checkpoints import Checkpoint, CheckpointStore, learning_rates
from lightning_xai.influence.latent import LabelFreeTracIn, LatentNearestNeighbours, SimplEx
from lightning_xai.influence.tracin import TopKResult
from lightning_xai.metrics.functional.consistency import example_consistency, feature_consistency
from lightning_xai.utilities.validation import check_positive_int
from lightning_xai.viz.examples import example_grid

__all__ = ["ExampleImportanceLogger"]

Method = Literal["simplex", "knn", "tracin"]
_METHODS = ("simplex", "knn", "tracin")
_SCORE_NAMES = {"simplex": "w", "knn": "d", "tracin": "s"}


def _split(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, (tuple, list)):
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


class ExampleImportanceLogger(XAICallback):
    """Label-free example importance of probe samples, with consistency scores, at val and test.

    For each probe sample (fixed, from the val set during ``fit``/``validate`` and the test set
    during ``test``) it finds the ``k`` most important examples of a fixed corpus drawn from
    the training set, by SimplEx weights (``"simplex"``), latent nearest neighbours (``"knn"``)
    or label-free TracIn (``"tracin"``), and logs under ``<stage>/<name>/`` (``name`` defaults to ``example_importance_logger``):

    * ``examples``: an image, one row per probe sample: the sample (framed) followed by its
      most important training examples, captioned with their index, label (if any) and weight
      (``w``), latent distance (``d``) or TracIn score (``s``);
    * ``example_consistency@<consistency_k>``: share of the top-``consistency_k`` examples that
      share the probe's label (only when batches carry labels; labels are never used to
      explain);
    * ``feature_consistency/ratio``, ``/top_shift``, ``/random_shift``: latent shift when the
      ``feature_k`` most attributed pixels of each probe (label-free ``feature_method``
      attribution) are masked, against ``feature_k`` random pixels;
    * ``<stage>/top_examples_step<N>.csv`` under ``<log_dir>/xai/<name>/``.

    The module needs ``encode(x)`` (and ``per_sample_loss(x)`` for ``"tracin"``), as
    :class:`~lightning_xai.modules.AutoEncoder` has. TracIn uses the checkpoints of a
    :class:`~lightning_xai.callbacks.TracInCheckpoint` callback or of ``checkpoints=`` when there
    are some, otherwise the current weights as a single checkpoint.

    Args:
        method: ``"simplex"``, ``"knn"`` or ``"tracin"``.
        k: training examples shown per probe sample.
        corpus_size: number of training examples in the corpus (drawn once with ``seed`` and
            kept in the callback state); ``None`` for the whole training set.
        consistency_k: top examples used for the example-consistency score.
        feature_method: captum method of the label-free feature attribution used for the
            feature-consistency score (``"integrated_gradients"``, ``"saliency"``, ...);
            ``None`` skips it.
        feature_k: pixels masked for the feature-consistency score.
        method_kwargs: further arguments of the explainer (e.g. ``{"corpus_top_k": 32}`` for
            SimplEx, ``{"metric": "cosine"}`` for nearest neighbours, ``{"projection_dim": 64}``
            for TracIn).
        checkpoints: directory of a TracIn checkpoint store (``"tracin"`` only).
        stages: any of ``("fit", "validate", "test")``.
        every_n_epochs: during ``fit``, run every n-th epoch.
        num_samples: number of probe samples.
        name: the tag and folder component (default ``"example_importance_logger"``); give each
            of several loggers on one trainer its own name.
        seed: seed of the probe samples and the corpus.

    Example:
        >>> cb = ExampleImportanceLogger(method="knn", k=4, num_samples=2)
        >>> cb.name, cb.method
        ('example_importance_logger', 'knn')
    """

    def __init__(
        self,
        method: Method = "simplex",
        k: int = 5,
        corpus_size: int | None = 256,
        consistency_k: int = 10,
        feature_method: str | None = "integrated_gradients",
        feature_k: int = 4,
        method_kwargs: Mapping[str, Any] | None = None,
        checkpoints: str | os.PathLike[str] | None = None,
        stages: Sequence[Stage] = STAGES,
        every_n_epochs: int = 1,
        num_samples: int = 8,
        name: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            stages=stages,
            every_n_epochs=every_n_epochs,
            num_samples=num_samples,
            seed=seed,
            name=name,
        )
        if method not in _METHODS:
            raise MisconfigurationException(f"`method` must be one of {_METHODS}, got {method!r}.")
        for arg, value in (("k", k), ("consistency_k", consistency_k), ("feature_k", feature_k)):
            check_positive_int(arg, value, error=MisconfigurationException)
        check_positive_int(
            "corpus_size", corpus_size, allow_none=True, error=MisconfigurationException
        )
        if feature_method is not None and not isinstance(feature_method, str):
            raise MisconfigurationException(
                f"`feature_method` must be a captum method name or None, got {feature_method!r}."
            )
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise MisconfigurationException(
                f"`name` must be a non-empty string without '/', got {name!r}."
            )
        if checkpoints is not None and method != "tracin":
            raise MisconfigurationException(
                f"`checkpoints` is only used by method='tracin', got method={method!r}; drop `checkpoints`."
            )
        self.method = method
        self.k = k
        self.corpus_size = corpus_size
        self.consistency_k = consistency_k
        self.feature_method = feature_method
        self.feature_k = feature_k
        self.method_kwargs = dict(method_kwargs or {})
        self.checkpoints = checkpoints
        self.corpus_indices: list[int] | None = None
        self._build(_ProbeModule(), check_only=True)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            name=self.name, method=self.method, stages=self.stages, seed=self.seed
        )

    # ------------------------------------------------------------------ setup
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # distinct names
        needed = ["encode"] + (["per_sample_loss"] if self.method == "tracin" else [])
        missing = [n for n in needed if not callable(getattr(pl_module, n, None))]
        if missing:
            raise MisconfigurationException(
                f"ExampleImportanceLogger(method={self.method!r}) needs the LightningModule to define "
                f"{missing} ({type(pl_module).__name__} does not); use an AutoEncoder or add them."
            )

    # ------------------------------------------------------------------ explainers
    def _build(
        self, pl_module: Any, trainer: pl.Trainer | None = None, check_only: bool = False
    ) -> Any:
        """The explainer for ``pl_module`` (with ``check_only``, validates ``method_kwargs``)."""
        try:
            if self.method == "simplex":
                return SimplEx(pl_module.encode, **self.method_kwargs)
            if self.method == "knn":
                return LatentNearestNeighbours(pl_module.encode, **self.method_kwargs)
            if check_only:
                return None
            options = {"show_progress": False, **self.method_kwargs}
            return LabelFreeTracIn(pl_module, self._checkpoints(trainer, pl_module), **options)
        except (TypeError, ValueError) as err:
            raise MisconfigurationException(
                f"Cannot build the {self.method!r} explainer (check `method_kwargs` and, for "
                f"TracIn, the checkpoints' parameters): {err}"
            ) from err

    def _checkpoints(self, trainer: pl.Trainer | None, pl_module: pl.LightningModule) -> Any:
        if self.checkpoints is not None:
            return CheckpointStore(self.checkpoints)
        recorders = [
            cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, TracInCheckpoint)
        ]
        if recorders and recorders[0].dirpath is not None and len(recorders[0].store) > 0:
            return recorders[0].store
        optimizers = list(getattr(trainer, "optimizers", []) or [])
        names = [n for n, _ in pl_module.named_parameters()]
        lr = learning_rates(pl_module, optimizers, names) if optimizers else 1.0
        return [Checkpoint.from_module(pl_module, lr=lr)]

    # ------------------------------------------------------------------ corpus
    def _corpus(
        self, trainer: pl.Trainer, device: torch.device
    ) -> tuple[Tensor, Tensor | None, list[int]]:
        dataset = self.dataset_of(trainer, "train")
        n = len(dataset)  # type: ignore[arg-type]
        indices = self.corpus_indices
        if indices is None or (indices and max(indices) >= n):
            size = n if self.corpus_size is None else min(self.corpus_size, n)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + 1))
            indices = sorted(order[:size].tolist())
            self.corpus_indices = indices
        x, y = _split(default_collate([dataset[i] for i in indices]))
        return x.to(device), y, indices

    # ------------------------------------------------------------------ running
    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        x, labels = _split(batch)
        corpus_x, corpus_y, corpus_idx = self._corpus(trainer, pl_module.device)
        with_labels = labels is not None and corpus_y is not None
        depth = min(max(self.k, self.consistency_k if with_labels else 1), len(corpus_x))
        top: TopKResult = self._build(pl_module, trainer).top_k(x, corpus_x, depth)
        indices, scores = top.indices.cpu(), top.scores.cpu()
        scalars: dict[str, float] = {}
        if with_labels and self.consistency_k <= len(corpus_x):
            agreement = example_consistency(
                indices, labels.cpu(), corpus_y.cpu(), k=self.consistency_k
            )
            scalars[self.tag(stage, f"example_consistency@{self.consistency_k}")] = float(agreement)
        if self.feature_method is not None and self.feature_k <= x[0].numel():
            attributor = Attributor(
                pl_module,
                self.feature_method,
                label_free=True,
                forward_fn=pl_module.encode,
                completeness_threshold=None,
            )
            shifts = feature_consistency(
                pl_module.encode,
                x,
                attributor.attribute(x).attributions,
                k=self.feature_k,
                seed=self.seed,
            )
            scalars.update(
                {
                    self.tag(stage, f"feature_consistency/{key}"): float(v)
                    for key, v in shifts.items()
                }
            )
        self._report(
            trainer, stage, x, labels, corpus_x, corpus_y, corpus_idx, indices, scores, scalars
        )

    def _report(
        self,
        trainer: pl.Trainer,
        stage: str,
        x: Tensor,
        labels: Tensor | None,
        corpus_x: Tensor,
        corpus_y: Tensor | None,
        corpus_idx: list[int],
        indices: Tensor,
        scores: Tensor,
        scalars: dict[str, float],
    ) -> None:
        rep, step = self.reporter(trainer), self.step(trainer)
        k = min(self.k, indices.shape[1])
        score_name = _SCORE_NAMES[self.method]
        sign = -1.0 if self.method == "knn" else 1.0  # show distances, not negative distances

        def label(y: Tensor | None, i: int) -> str:
            return f" y={int(y[i])}" if y is not None else ""

        cells, captions, marks, rows = [], [], [], []
        for p in range(len(x)):
            cells.append(x[p].cpu())
            captions.append(f"probe{label(labels, p)}")
            marks.append(True)
            for rank in range(k):
                j = int(indices[p, rank])
                value = sign * float(scores[p, rank])
                cells.append(corpus_x[j].cpu())
                captions.append(f"#{corpus_idx[j]}{label(corpus_y, j)} {score_name}={value:.2g}")
                marks.append(False)
                row = {"probe": p, "rank": rank, "train_index": corpus_idx[j], score_name: value}
                if corpus_y is not None:
                    row["label"] = int(corpus_y[j])
                if labels is not None:
                    row["probe_label"] = int(labels[p])
                rows.append(row)
        title = f"{self.method}: probe | {k} most important training examples"
        grid = example_grid(torch.stack(cells), captions, ncols=1 + k, title=title, highlight=marks)
        rep.log_image(self.tag(stage, "examples"), grid, step)
        rep.log_scalars(scalars, step)
        rep.save(f"{stage}/top_examples_step{step:06d}.csv", rows)

    # ------------------------------------------------------------------ resume
    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "corpus_indices": self.corpus_indices}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        saved = state_dict.get("corpus_indices")
        self.corpus_indices = list(saved) if saved is not None else None


class _ProbeModule:
    """Stand-in with an ``encode`` method, to validate ``method_kwargs`` in ``__init__``."""

    @staticmethod
    def encode(x: Tensor) -> Tensor:
        return x
