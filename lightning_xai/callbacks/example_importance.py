"""Log, for fixed probe samples, the training examples that explain their representation."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from typing_extensions import override

from lightning_xai.attribution.attributor import Attributor
from lightning_xai.attribution.config import AttributionConfig
from lightning_xai.callbacks.base import (
    STAGES,
    Stage,
    TrainDataLike,
    XAICallback,
    check_adapter,
    check_train_data,
)
from lightning_xai.callbacks.tracin_checkpoint import TracInCheckpoint
from lightning_xai.influence.checkpoints import Checkpoint, CheckpointStore, learning_rates
from lightning_xai.influence.latent import (
    EncoderLike,
    LabelFreeTracIn,
    LatentNearestNeighbours,
    SimplEx,
    encoded_features,
    resolve_encoder,
)
from lightning_xai.influence.tracin import TopKResult
from lightning_xai.metrics.functional.consistency import example_consistency, feature_consistency
from lightning_xai.utilities.batches import AdaptedBatch, BatchAdapter
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.validation import check_positive_int
from lightning_xai.viz.examples import example_grid

__all__ = ["ExampleImportanceLogger"]

Method = Literal["simplex", "knn", "tracin"]
_METHODS = ("simplex", "knn", "tracin")
_SCORE_NAMES = {"simplex": "w", "knn": "d", "tracin": "s"}


def _feature_config(feature_method: Any) -> AttributionConfig | None:
    """The validated label-free attribution of the feature-consistency score."""
    if feature_method is None:
        return None
    try:
        if isinstance(feature_method, AttributionConfig):
            if feature_method.target not in (None, "pred"):
                raise ValueError("a label-free attribution has no target; leave `target` None")
            return feature_method.replace(label_free=True, target=None)
        if isinstance(feature_method, str):
            return AttributionConfig(
                feature_method, label_free=True, completeness_threshold=None, check_hooks=False
            )
    except (TypeError, ValueError) as err:
        raise MisconfigurationException(f"`feature_method={feature_method!r}`: {err}") from err
    raise MisconfigurationException(
        f"`feature_method` must be a captum method name, an AttributionConfig or None, got "
        f"{feature_method!r}."
    )


def _picture(x: Tensor) -> Tensor:
    """Examples as something :func:`example_grid` draws: images with 1 or 3 channels, ``(H, W)``
    maps (1-D signals as channels x time) or feature strips (tabular rows, token ids)."""
    x = x.detach().cpu().float()
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3):
        return x.mean(1)
    if x.ndim > 4:
        return x.flatten(1)
    return x


class ExampleImportanceLogger(XAICallback):
    """Label-free example importance of probe samples, with consistency scores, at val and test.

    For each probe sample (fixed, from the val set during ``fit``/``validate`` and the test set
    during ``test``) it finds the ``k`` most important examples of a fixed corpus drawn from
    the training set, by SimplEx weights (``"simplex"``), latent nearest neighbours (``"knn"``)
    or label-free TracIn (``"tracin"``), and logs under ``<stage>/<name>/`` (``name`` defaults
    to ``example_importance_logger``):

    * ``examples``: an image, one row per probe sample: the sample (framed) followed by its
      most important training examples, captioned with their index, label (if any) and weight
      (``w``), latent distance (``d``) or TracIn score (``s``); RGB or grey images of any size,
      1-D signals (channels x time), tabular rows and token ids are drawn;
    * ``example_consistency_top<consistency_k>_higher_is_better``: share of the top-``consistency_k`` examples that
      share the probe's label (only when batches carry one label per example; labels are
      never used to explain);
    * ``feature_consistency/ratio``, ``/top_shift``, ``/random_shift``: latent shift when the
      ``feature_k`` most attributed features of each probe (label-free ``feature_method``
      attribution) are masked, against ``feature_k`` random features;
    * ``<stage>/top_examples_step<N>.csv`` under ``<log_dir>/xai/<name>/``.

    The representation is the module's ``encode`` method (as
    :class:`~lightning_xai.modules.AutoEncoder` has), or ``encoder=``; ``"tracin"`` also needs
    ``per_sample_loss(x)``. The corpus comes from the training set in ``fit``, ``validate`` and
    ``test`` alike (``train_data=``, the datamodule, or the trainer's last fit). TracIn uses the
    checkpoints of a :class:`~lightning_xai.callbacks.TracInCheckpoint` callback or of
    ``checkpoints=`` when there are some, otherwise the current weights as a single checkpoint.
    Before the first training step it checks, on real samples, that the training data are
    reachable, the adapter reads the batches and the encoder returns ``(N, ...)`` features.

    Args:
        method: ``"simplex"``, ``"knn"`` or ``"tracin"``.
        k: training examples shown per probe sample.
        corpus_size: number of training examples in the corpus (drawn once with ``seed`` and
            kept in the callback state); ``None`` for the whole training set.
        consistency_k: top examples used for the example-consistency score.
        feature_method: the label-free feature attribution of the feature-consistency score: a
            captum method name (``"integrated_gradients"``, ``"saliency"``, ...) or an
            :class:`~lightning_xai.attribution.AttributionConfig`; ``None`` skips it. It needs
            one floating-point input per batch.
        feature_k: features masked for the feature-consistency score.
        method_kwargs: further arguments of the explainer (e.g. ``{"corpus_top_k": 32}`` for
            SimplEx, ``{"metric": "cosine"}`` for nearest neighbours, ``{"projection_dim": 64}``
            for TracIn).
        checkpoints: directory of a TracIn checkpoint store (``"tracin"`` only).
        stages: any of ``("fit", "validate", "test")``.
        every_n_epochs: during ``fit``, run every n-th epoch (``None``: the last one only).
        num_samples: number of probe samples.
        name: the tag and folder component (default ``"example_importance_logger"``); give each
            of several loggers on one trainer its own name.
        seed: seed of the probe samples and the corpus.
        adapter: how to read batches (:class:`~lightning_xai.utilities.BatchAdapter`): the
            explained input is encoded and drawn, other encoder arguments are passed through,
            labels only caption and score.
        train_data: the corpus source (a Dataset or DataLoader), when neither a datamodule nor
            a previous ``fit`` of the trainer provides the training set.
        encoder: the representation, instead of ``encode``: a module, a callable, a method name
            or a submodule path of the module (``"encoder"``, ``"backbone"``).

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
        feature_method: str | AttributionConfig | None = "integrated_gradients",
        feature_k: int = 4,
        method_kwargs: Mapping[str, Any] | None = None,
        checkpoints: str | os.PathLike[str] | None = None,
        stages: Sequence[Stage] = STAGES,
        every_n_epochs: int | None = 1,
        num_samples: int = 8,
        name: str | None = None,
        seed: int = 0,
        adapter: BatchAdapter | None = None,
        train_data: TrainDataLike = None,
        encoder: EncoderLike = None,
        verbose: bool = True,
        strict: bool = False,
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
        if method not in _METHODS:
            raise MisconfigurationException(f"`method` must be one of {_METHODS}, got {method!r}.")
        for arg, value in (("k", k), ("consistency_k", consistency_k), ("feature_k", feature_k)):
            check_positive_int(arg, value, error=MisconfigurationException)
        check_positive_int(
            "corpus_size", corpus_size, allow_none=True, error=MisconfigurationException
        )
        if checkpoints is not None and method != "tracin":
            raise MisconfigurationException(
                f"`checkpoints` is only used by method='tracin', got method={method!r}; drop "
                "`checkpoints`."
            )
        check_adapter(adapter, "BatchAdapter(inputs='pixel_values')")
        check_train_data(train_data)
        if encoder is not None and not (isinstance(encoder, str) or callable(encoder)):
            raise MisconfigurationException(
                f"`encoder` must be a module, a callable, a method name or a submodule path, got "
                f"{type(encoder).__name__}; e.g. encoder='encoder'."
            )
        self.method = method
        self.k = k
        self.corpus_size = corpus_size
        self.consistency_k = consistency_k
        self.feature_method = feature_method
        self.feature_config = _feature_config(feature_method)
        self.feature_k = feature_k
        self.method_kwargs = dict(method_kwargs or {})
        self.checkpoints = checkpoints
        self.adapter = adapter if adapter is not None else BatchAdapter()
        self.train_data = train_data
        self.encoder = encoder
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
        if self.encoder is None and not callable(getattr(pl_module, "encode", None)):
            raise MisconfigurationException(
                f"ExampleImportanceLogger needs the representation to explain: "
                f"{type(pl_module).__name__} has no `encode` method; add one, or pass "
                "`encoder=` (a submodule path such as 'encoder' or 'backbone', a method name, a "
                "module or a callable)."
            )
        if self.method == "tracin" and not callable(getattr(pl_module, "per_sample_loss", None)):
            raise MisconfigurationException(
                f"ExampleImportanceLogger(method='tracin') needs the LightningModule to define "
                f"`per_sample_loss(x) -> (N,)` ({type(pl_module).__name__} does not); use an "
                "AutoEncoder, add it, or choose method='simplex' or 'knn'."
            )

    def _encoder(self, pl_module: pl.LightningModule) -> Callable[..., Any]:
        try:
            return resolve_encoder(pl_module, self.encoder)
        except (TypeError, ValueError) as err:
            raise MisconfigurationException(str(err)) from err

    def _split(self, batch: Any, encoder: Callable[..., Any], what: str) -> AdaptedBatch:
        try:
            return self.adapter.split(batch, encoder)
        except ValueError as err:
            raise MisconfigurationException(
                f"ExampleImportanceLogger cannot read a {what} batch with `adapter`: {err}"
            ) from err

    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Training data reachable; adapter and encoder work on 2 real probe and corpus
        samples; TracIn's loss and parameters; the feature attribution's input."""
        dataset = self.train_dataset(trainer)
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise MisconfigurationException(
                "ExampleImportanceLogger: the training set is empty; there is no corpus."
            )
        encoder = self._encoder(pl_module)
        probe = self.check_batch(trainer, pl_module, stage, limit=2)
        corpus = self.collate(trainer, pl_module, dataset, range(min(2, len(dataset))))  # type: ignore[arg-type]
        widths = []
        with eval_mode(pl_module), torch.no_grad():
            for what, batch in (("probe", probe), ("training", corpus)):
                split = self._split(batch, encoder, what)
                try:
                    out = split.call(encoder, raw=True)
                    widths.append(encoded_features(out).shape[1])
                except Exception as err:  # noqa: BLE001 - any failure of the user's encoder
                    raise MisconfigurationException(
                        f"ExampleImportanceLogger: the encoder ({self.encoder or 'encode'!r}) "
                        f"failed on 2 real {what} samples: {type(err).__name__}: {err}. Choose "
                        "the representation with `encoder=` and the batch layout with `adapter=`."
                    ) from err
        if widths[0] != widths[1]:
            raise MisconfigurationException(
                f"ExampleImportanceLogger: probe and training samples encode to different sizes "
                f"({widths[0]} vs {widths[1]}); the encoder must map every example to the same "
                "number of features (pad or pool variable-length inputs)."
            )
        if self.method == "tracin":
            if self.checkpoints is not None and stage != "fit":
                store = CheckpointStore(self.checkpoints)
                if len(store) == 0:
                    raise MisconfigurationException(
                        f"`checkpoints={str(self.checkpoints)!r}` holds no TracIn checkpoints; "
                        "point it at the directory a TracInCheckpoint callback wrote during fit, "
                        "or drop `checkpoints` to use the current weights."
                    )
            explainer = self._build(pl_module, None, current_weights=True)
            try:
                with eval_mode(pl_module):
                    explainer.attribute(probe, corpus)
            except (TypeError, ValueError, RuntimeError) as err:
                raise MisconfigurationException(
                    f"ExampleImportanceLogger(method='tracin') failed on 2 real samples: {err}"
                ) from err
        if self.feature_config is not None:
            split = self._split(probe, encoder, "probe")
            x = split.inputs[0]
            if len(split.inputs) != 1 or split.extras or not x.is_floating_point():
                raise MisconfigurationException(
                    f"`feature_method={self.feature_method!r}` attributes one floating-point "
                    f"input, but the batches give {len(split.inputs)} input(s) of type "
                    f"{str(x.dtype).replace('torch.', '')} and {len(split.extras)} further "
                    "encoder argument(s); pass feature_method=None."
                )
            if self.feature_k > x[0].numel():
                raise MisconfigurationException(
                    f"`feature_k={self.feature_k}` exceeds the {x[0].numel()} features of an "
                    f"example; pass feature_k <= {x[0].numel()}."
                )

    # ------------------------------------------------------------------ explainers
    def _build(
        self,
        pl_module: Any,
        trainer: pl.Trainer | None = None,
        check_only: bool = False,
        current_weights: bool = False,
    ) -> Any:
        """The explainer for ``pl_module`` (with ``check_only``, validates ``method_kwargs``)."""
        encoder = None if check_only else self.encoder
        try:
            if self.method == "simplex":
                return SimplEx(
                    pl_module, encoder=encoder, adapter=self.adapter, **self.method_kwargs
                )
            if self.method == "knn":
                return LatentNearestNeighbours(
                    pl_module, encoder=encoder, adapter=self.adapter, **self.method_kwargs
                )
            if check_only:
                return None
            options: dict[str, Any] = {"show_progress": False, **self.method_kwargs}
            submodule = (
                resolve_encoder(pl_module, self.encoder) if self.encoder is not None else None
            )
            if isinstance(submodule, nn.Module) and submodule is not pl_module:
                options.setdefault("encoder", submodule)
            checkpoints = (
                [Checkpoint.from_module(pl_module, lr=1.0)]
                if current_weights
                else self._checkpoints(trainer, pl_module)
            )
            return LabelFreeTracIn(pl_module, checkpoints, adapter=self.adapter, **options)
        except (TypeError, ValueError) as err:
            raise MisconfigurationException(
                f"Cannot build the {self.method!r} explainer (check `method_kwargs`, `encoder` "
                f"and, for TracIn, the checkpoints' parameters): {err}"
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
    def _corpus(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Any, list[int]]:
        """The corpus batch (collated, on the module's device) and its training-set indices."""
        dataset = self.train_dataset(trainer)
        n = len(dataset)  # type: ignore[arg-type]
        indices = self.corpus_indices
        if indices is None or not indices or max(indices) >= n:
            size = n if self.corpus_size is None else min(self.corpus_size, n)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + 1))
            indices = sorted(order[:size].tolist())
            self.corpus_indices = indices
        return self.collate(trainer, pl_module, dataset, indices), indices

    # ------------------------------------------------------------------ running
    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        encoder = self._encoder(pl_module)
        probe = self._split(batch, encoder, "probe")
        corpus_batch, corpus_idx = self._corpus(trainer, pl_module)
        corpus = self._split(corpus_batch, encoder, "training")
        labels, corpus_y = _class_labels(probe.labels), _class_labels(corpus.labels)
        with_labels = labels is not None and corpus_y is not None
        n_corpus = len(corpus)
        depth = min(max(self.k, self.consistency_k if with_labels else 1), n_corpus)
        top: TopKResult = self._build(pl_module, trainer).top_k(batch, corpus_batch, depth)
        indices, scores = top.indices.cpu(), top.scores.cpu()
        scalars: dict[str, float] = {}
        if with_labels and self.consistency_k <= n_corpus:
            agreement = example_consistency(
                indices, labels.cpu(), corpus_y.cpu(), k=self.consistency_k
            )
            key = f"example_consistency_top{self.consistency_k}_higher_is_better"
            scalars[self.tag(stage, key)] = float(agreement)
        if self.feature_config is not None:
            scalars.update(self._feature_scores(pl_module, encoder, probe.inputs[0], stage))
        self._report(
            trainer,
            stage,
            probe.inputs[0],
            labels,
            corpus.inputs[0],
            corpus_y,
            corpus_idx,
            indices,
            scores,
            scalars,
        )

    def _feature_scores(
        self, pl_module: pl.LightningModule, encoder: Callable[..., Any], x: Tensor, stage: str
    ) -> dict[str, float]:
        def encode(inputs: Tensor) -> Tensor:
            return encoded_features(encoder(inputs))

        attributor = Attributor(pl_module, self.feature_config, forward_fn=encode)
        shifts = feature_consistency(
            encode, x, attributor.attribute(x).attributions, k=self.feature_k, seed=self.seed
        )
        return {
            self.tag(stage, f"feature_consistency/{key}"): float(v) for key, v in shifts.items()
        }

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

        pictures, corpus_pictures = _picture(x), _picture(corpus_x)
        cells, captions, marks, rows = [], [], [], []
        for p in range(len(x)):
            cells.append(pictures[p])
            captions.append(f"probe{label(labels, p)}")
            marks.append(True)
            for rank in range(k):
                j = int(indices[p, rank])
                value = sign * float(scores[p, rank])
                cells.append(corpus_pictures[j])
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


def _class_labels(labels: Tensor | None) -> Tensor | None:
    """Labels as one class index per example, or ``None`` (none, or not of that form)."""
    if labels is None or labels.is_floating_point():
        return None
    labels = labels.reshape(len(labels), -1) if labels.ndim > 0 else labels
    return labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else None


class _ProbeModule:
    """Stand-in with an ``encode`` method, to validate ``method_kwargs`` in ``__init__``."""

    @staticmethod
    def encode(x: Tensor) -> Tensor:
        return x
