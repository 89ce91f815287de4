r"""TracIn: training-data influence from gradients at saved checkpoints.

.. math::

    \mathrm{TracIn}(z, z') = \sum_c \eta_c \, \nabla_\theta \ell(\theta_c, z) \cdot
    \nabla_\theta \ell(\theta_c, z')

summed over checkpoints :math:`c` taken during training with learning rate :math:`\eta_c`.
Self-influence (:math:`z = z'`) is large for examples the model had to work hard to fit, which
is where mislabeled examples end up.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from lightning_xai.influence.checkpoints import (
    Checkpoint,
    CheckpointStore,
    check_compatible,
    load_checkpoint_file,
)
from lightning_xai.influence.errors import CheckpointError, NonFiniteError
from lightning_xai.influence.per_sample_grads import (
    LossFn,
    ParameterSpec,
    Targets,
    _check_targets,
    _grad_blocks,
    _GradBlocks,
    check_finite_batch,
    per_sample_grads,
    select_parameters,
)
from lightning_xai.influence.projection import (
    GradientFeatures,
    GradientSketch,
    gaussian_matrix,
    tensor_digest,
)
from lightning_xai.utilities.batches import BatchAdapter, batch_size, select_rows
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["InfluenceResult", "SelfInfluenceResult", "TopKResult", "TracIn"]

Data = Tensor | Sequence[Tensor] | Mapping[str, Any] | Dataset | DataLoader
Checkpoints = CheckpointStore | str | os.PathLike | Sequence[Checkpoint | str | os.PathLike]


@dataclass
class SelfInfluenceResult:
    """Self-influence scores of ``N`` examples (higher: more suspicious).

    Attributes:
        scores: ``(N,)`` tensor, in the order of the data.
    """

    scores: Tensor

    def ranking(self) -> Tensor:
        """Indices sorted by decreasing self-influence."""
        return torch.argsort(self.scores, descending=True, stable=True)

    def top(self, k: int) -> Tensor:
        """Indices of the ``k`` most self-influential examples."""
        return self.ranking()[:k]

    def recall(self, flags: Tensor, fraction: float) -> float:
        """Share of flagged examples (e.g. mislabeled) found by checking the top ``fraction``.

        Example:
            >>> r = SelfInfluenceResult(torch.tensor([0.9, 0.1, 0.8, 0.2]))
            >>> r.recall(torch.tensor([True, False, False, True]), fraction=0.5)
            0.5
        """
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}.")
        flags = torch.as_tensor(flags, dtype=torch.bool).cpu()
        if flags.shape != self.scores.shape:
            raise ValueError(
                f"`flags` has shape {tuple(flags.shape)}, expected {tuple(self.scores.shape)}."
            )
        total = int(flags.sum())
        if total == 0:
            return float("nan")
        checked = self.top(math.ceil(fraction * len(self.scores)))
        return float(flags[checked].sum()) / total


@dataclass
class InfluenceResult:
    """Influence of ``N`` training examples on ``M`` test examples.

    Attributes:
        scores: ``(M, N)``; ``scores[i, j]`` is the influence of training example ``j`` on
            test example ``i`` (positive: a proponent, training on it lowered the test loss).
    """

    scores: Tensor


@dataclass
class TopKResult:
    """The ``k`` strongest proponents (or opponents) of each of ``M`` test examples.

    Attributes:
        indices: ``(M, k)`` training-set indices, strongest first.
        scores: ``(M, k)`` their influence scores.
        proponents: ``True`` for proponents (largest scores), ``False`` for opponents.
    """

    indices: Tensor
    scores: Tensor
    proponents: bool


# ---------------------------------------------------------------------------- data handling
def _num_examples(data: Data) -> int:
    if isinstance(data, GradientFeatures):
        return len(data)
    if isinstance(data, DataLoader):
        return len(data.sampler) if data.batch_size is not None else len(data)  # type: ignore[arg-type]
    if isinstance(data, (Tensor, Mapping)):
        return batch_size(data)
    if isinstance(data, (tuple, list)):
        return len(data[0])
    return len(data)  # type: ignore[arg-type]


def _leaves(batch: Any) -> Iterator[Tensor]:
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for key in sorted(batch):
            yield from _leaves(batch[key])
    elif isinstance(batch, (tuple, list)):
        for item in batch:
            yield from _leaves(item)


def _fingerprint(data: Data, size: int) -> str:
    """The number of examples and a hash of the first chunk: which data features belong to."""
    h = hashlib.sha256(str(_num_examples(data)).encode())
    for tensor in _leaves(next(iter(_chunks(data, size)))):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _check_data(data: Data, name: str) -> None:
    _check_data_form(data, name)
    if _num_examples(data) == 0:
        raise ValueError(f"`{name}` is empty (0 examples); pass at least one example.")


def _check_data_form(data: Data, name: str) -> None:
    if isinstance(data, GradientFeatures):
        return
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler):
            raise ValueError(
                f"`{name}` is a DataLoader that shuffles; scores are returned in data order, "
                "so pass a loader with shuffle=False (or the dataset itself)."
            )
        return
    if isinstance(data, Tensor):
        if data.dim() == 0:
            raise ValueError(f"`{name}` is a scalar tensor; pass examples of shape (N, ...).")
        return
    if isinstance(data, (tuple, list, Mapping)):
        values = list(data.values()) if isinstance(data, Mapping) else list(data)
        tensors = [t for t in values if isinstance(t, Tensor) and t.dim() > 0]
        kind = "dict" if isinstance(data, Mapping) else "tuple"
        if not tensors or (kind == "tuple" and len(tensors) != len(values)):
            raise TypeError(
                f"`{name}` as a {kind} must hold tensors of shape (N, ...) (e.g. (x, y) or "
                f"{{'input_ids': ..., 'labels': ...}}); got {data!r:.80}."
            )
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(
                f"`{name}` tensors have different lengths {sorted(lengths)}; they must match."
            )
        return
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(
            f"`{name}` must be a Dataset, a DataLoader, a tensor, a tuple or a dict of tensors; "
            f"got {type(data).__name__}."
        )


def json_safe(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    import json

    return json.loads(json.dumps(value, default=str))


def _rows(batch: Any, size: int) -> Iterator[Any]:
    """Consecutive pieces of at most ``size`` examples of one batch (any layout)."""
    n = batch_size(batch)
    if n <= size:
        yield batch
        return
    for start in range(0, n, size):
        yield select_rows(batch, slice(start, start + size), n)


def _chunks(data: Data, size: int) -> Iterator[Any]:
    """Yield batches of at most ``size`` examples, in data order."""
    if isinstance(data, (Tensor, Mapping)):
        yield from _rows(data, size)
        return
    if isinstance(data, (tuple, list)):
        yield from _rows(tuple(data), size)
        return
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=size)
    for batch in loader:
        yield from _rows(tuple(batch) if type(batch) is list else batch, size)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(t, device) for t in batch)
    return batch


def _cat_blocks(blocks: list[_GradBlocks]) -> _GradBlocks:
    """Stack the blocks of consecutive chunks (same model, same parameters)."""
    parts = [
        (name, torch.cat([b.parts[i][1] for b in blocks]))
        for i, (name, _) in enumerate(blocks[0].parts)
    ]
    factored = [
        (
            name,
            torch.cat([b.factored[i][1] for b in blocks]),
            torch.cat([b.factored[i][2] for b in blocks]),
        )
        for i, (name, _, _) in enumerate(blocks[0].factored)
    ]
    return _GradBlocks(parts, factored)


# ---------------------------------------------------------------------------- TracIn
class TracIn:
    r"""Training-data influence with TracIn over saved checkpoints.

    .. math::

        \mathrm{TracIn}(z, z') = \sum_c \eta_c \, \nabla_\theta \ell(\theta_c, z) \cdot
        \nabla_\theta \ell(\theta_c, z')

    Per-sample gradients are computed ``batch_size`` examples at a time (see ``method``), so
    memory is bounded by the chunk size, not the dataset size; each checkpoint is loaded once
    and the test gradients are computed once per checkpoint. The model itself is never
    modified: checkpoint values are passed to a functional call (``torch.func``), and
    train/eval mode is restored. Gradients are taken in eval mode.

    Args:
        model: the network, called as ``adapter`` says (any signature: ``model(x)``,
            ``model(input_ids, attention_mask=...)``, ``model(image, features)``).
        checkpoints: a :class:`~lightning_xai.influence.CheckpointStore`, its directory (as
            written by :class:`~lightning_xai.callbacks.TracInCheckpoint`), or a list of
            :class:`~lightning_xai.influence.Checkpoint` objects or ``.pt`` paths. Parameters
            and buffers missing from a checkpoint take the model's current values.
        loss_fn: per-sample loss ``loss_fn(scores, target) -> (B,)``, where ``scores`` are
            read from the model's output by the adapter (``logits`` of a ``ModelOutput``, ...);
            see ``targets``.
        parameters: the parameters :math:`\theta` whose gradients count: ``None`` (all that
            require grad), ``"all"``, ``"last"`` (the last layer) or names/glob patterns.
        projection_dim: if set, gradients are projected to ``projection_dim`` features with a
            seeded random projection (an unbiased estimate of the dot products), see
            ``projection``.
        projection: ``"sketch"`` (default): a structured count sketch
            (:class:`~lightning_xai.influence.GradientSketch`): one scatter-add per gradient,
            ``Linear`` gradients sketched in factored form, no ``P x projection_dim`` matrix;
            ``"gaussian"``: a dense seeded Gaussian matrix ``(P, projection_dim)`` scaled by
            ``1/sqrt(projection_dim)`` (kept for comparison; slow and large for wide models).
        normalize: cosine variant: each checkpoint's gradients are scaled to unit norm, so
            ``sum_c eta_c cos(g_c(z), g_c(z'))`` is returned (not for self-influence).
        batch_size: examples per vectorised gradient chunk.
        targets: ``"labels"``: the loss is ``loss_fn(scores, labels)`` with the adapter's
            labels (checked against the scores); ``"inputs"``: label-free,
            ``loss_fn(scores, x)`` with the first explained input ``x``.
        seed: seed of the random projection.
        show_progress: show a tqdm progress bar.
        device: where gradients are computed; default: the model's device.
        method: ``"auto"``: ``Linear``/``Conv2d`` weights get their per-sample gradients from
            one batched backward pass (a ``Linear`` weight's gradient stays in factored form,
            input times output gradient, so dot products never form it) and every other
            parameter from ``torch.func``; checked once against ``torch.func`` on two samples.
            ``"vmap"``: ``torch.func`` (``vmap`` over ``grad``) for every parameter.
        adapter: a :class:`~lightning_xai.utilities.batches.BatchAdapter` saying what in a
            batch is explained, what the labels are, what else the model needs (an
            ``attention_mask``, a second input) and where the scores are; default
            ``BatchAdapter()`` (tensors, ``(x, y, ...)`` tuples, HuggingFace-style dicts).
            Gradients are taken with respect to parameters only, so integer token inputs work
            (embedding tables are parameters like any other).

    ``data`` arguments may be a ``Dataset`` (indexed in order; tuple or dict items), a
    ``DataLoader`` that does not shuffle, a tensor ``x`` (label-free), a tuple of tensors
    ``(x, y, ...)`` or a dict of tensors (``{"input_ids": ..., "attention_mask": ...,
    "labels": ...}``); the adapter reads each chunk.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from torch import nn
        >>> net = nn.Linear(2, 2)
        >>> ckpts = [Checkpoint.from_module(net, lr=0.5)]
        >>> loss = lambda out, y: F.cross_entropy(out, y, reduction="none")
        >>> tracin = TracIn(net, ckpts, loss, show_progress=False)
        >>> x, y = torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
        >>> tracin.self_influence((x, y)).scores.shape
        torch.Size([6])
        >>> tracin.top_k((x[:2], y[:2]), (x, y), k=3).indices.shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        checkpoints: Checkpoints,
        loss_fn: LossFn,
        parameters: ParameterSpec = None,
        projection_dim: int | None = None,
        normalize: bool = False,
        batch_size: int = 256,
        targets: Targets = "labels",
        seed: int = 0,
        show_progress: bool = True,
        device: torch.device | str | None = None,
        method: Literal["auto", "vmap"] = "auto",
        adapter: BatchAdapter | None = None,
        projection: Literal["sketch", "gaussian"] = "sketch",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        if not callable(loss_fn):
            raise TypeError(
                f"`loss_fn` must be callable (outputs, target) -> (B,), got {loss_fn!r}."
            )
        check_positive_int("batch_size", batch_size)
        check_positive_int("projection_dim", projection_dim, allow_none=True)
        _check_targets(targets)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}.")
        for flag, value in (("normalize", normalize), ("show_progress", show_progress)):
            if not isinstance(value, bool):
                raise TypeError(f"`{flag}` must be True or False, got {value!r}.")
        if device is not None:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(
                    f"`device` must be a torch device or its name ('cpu', 'cuda:0'), got "
                    f"{device!r}."
                ) from err
        if projection not in ("sketch", "gaussian"):
            raise ValueError(f"`projection` must be 'sketch' or 'gaussian', got {projection!r}.")
        if method not in ("auto", "vmap"):
            raise ValueError(f"`method` must be 'auto' or 'vmap', got {method!r}.")
        if adapter is not None and not isinstance(adapter, BatchAdapter):
            raise TypeError(
                f"`adapter` must be a BatchAdapter or None, got {type(adapter).__name__}."
            )
        self.adapter = adapter if adapter is not None else BatchAdapter()
        self.method = method
        self._fast_ok = True
        self._verified = False
        self.model = model
        self.loss_fn = loss_fn
        self.names = select_parameters(model, parameters)
        self.projection_dim = projection_dim
        self.normalize = bool(normalize)
        self.batch_size = batch_size
        self.targets = targets
        self.seed = seed
        self.show_progress = show_progress
        if device is None:
            tensors = [*model.parameters(), *model.buffers()]
            device = tensors[0].device if tensors else "cpu"
        self.device = torch.device(device)
        self._sources = self._resolve_checkpoints(checkpoints)
        self._current: Any = self._sources[0]
        self._projection: Tensor | None = None
        self.projection = projection
        self._sketch = (
            GradientSketch(projection_dim, seed, self.device)
            if projection_dim is not None and projection == "sketch"
            else None
        )
        params = dict(model.named_parameters())
        self._sizes = [params[n].numel() for n in self.names]
        self._shapes = {n: tuple(params[n].shape) for n in self.names}

    # ------------------------------------------------------------------ checkpoints
    def _resolve_checkpoints(self, checkpoints: Checkpoints) -> list[Any]:
        if isinstance(checkpoints, (str, os.PathLike)) and Path(checkpoints).is_dir():
            checkpoints = CheckpointStore(checkpoints)
        if isinstance(checkpoints, CheckpointStore):
            sources: list[Any] = [(checkpoints, e) for e in checkpoints.entries]
            where = f"store {checkpoints.dirpath}"
        elif isinstance(checkpoints, (str, os.PathLike, Checkpoint)):
            sources, where = [checkpoints], "`checkpoints`"
        elif isinstance(checkpoints, Sequence):
            sources, where = list(checkpoints), "`checkpoints`"
        else:
            raise TypeError(
                "`checkpoints` must be a CheckpointStore, its directory, or a list of Checkpoint "
                f"objects or .pt paths; got {type(checkpoints).__name__}."
            )
        if not sources:
            raise ValueError(
                f"No checkpoints in {where}: record some during training with "
                "TracInCheckpoint or pass a list of Checkpoint objects."
            )
        checked: list[Any] = []
        for source in sources:
            held = None
            if isinstance(source, tuple):
                held = source[1].params
            elif isinstance(source, Checkpoint):
                held = tuple(source.params)
            elif isinstance(source, (str, os.PathLike)):
                if not Path(source).is_file():
                    raise ValueError(f"Checkpoint file {str(source)!r} does not exist.")
            else:
                raise TypeError(
                    "`checkpoints` entries must be Checkpoint objects or .pt paths, got "
                    f"{type(source).__name__}."
                )
            if held is not None:
                self._check_held(held, self._describe(source, len(checked)))
            checked.append(source)
        return sources

    def _check_held(self, held: Sequence[str], where: str) -> None:
        missing = [n for n in self.names if n not in held]
        if missing:
            raise CheckpointError(
                f"The {where} lacks the tracked parameters {missing}; it holds "
                f"{list(held)[:8]}. Pass `parameters=` the names the checkpoints hold (e.g. "
                "'last' when TracInCheckpoint tracked the last layer)."
            )

    @staticmethod
    def _describe(source: Any, index: int) -> str:
        if isinstance(source, tuple):
            store, entry = source
            return f"checkpoint file {str(store.dirpath / entry.file)!r} ({entry.describe()})"
        if isinstance(source, Checkpoint):
            return f"checkpoint #{index} (epoch {source.epoch}, step {source.step})"
        return f"checkpoint file {str(source)!r}"

    def _load(self, source: Any) -> Checkpoint:
        """Load ``source``, check that it is finite and fits the model (errors name it)."""
        index = next((i for i, s in enumerate(self._sources) if s is source), -1)
        where = self._describe(source, index)
        if isinstance(source, Checkpoint):
            ckpt = source
            ckpt.check_finite(f"The {where}")
        elif isinstance(source, tuple):
            ckpt = source[0].load(source[1])
        else:
            ckpt = load_checkpoint_file(source)
        check_compatible(ckpt, self.model, self.names, f"The {where}")
        return ckpt

    def _prepare(self, source: Any) -> tuple[dict[str, Tensor], float, dict[str, float] | None]:
        """Checkpoint values on the device, the checkpoint weight and per-parameter scales."""
        ckpt = self._load(source)
        self._current = source
        values = {n: t.to(self.device) for n, t in {**ckpt.buffers, **ckpt.params}.items()}
        if not isinstance(ckpt.lr, dict):
            return values, float(ckpt.lr), None
        rates = {n: ckpt.lr_of(n) for n in self.names}
        if self.normalize:  # unit-norm gradients: the checkpoint weight is the mean rate
            mean = sum(rates[n] * size for n, size in zip(self.names, self._sizes)) / sum(
                self._sizes
            )
            return values, mean, {n: math.sqrt(r) for n, r in rates.items()}
        return values, 1.0, {n: math.sqrt(r) for n, r in rates.items()}

    # ------------------------------------------------------------------ gradients
    def _blocks(self, batch: Any, values: dict[str, Tensor]) -> _GradBlocks:
        batch = _to(batch, self.device)
        fast = self.method == "auto" and self._fast_ok
        kwargs: dict[str, Any] = dict(targets=self.targets, values=values, adapter=self.adapter)
        blocks = _grad_blocks(self.model, batch, self.loss_fn, self.names, fast=fast, **kwargs)
        if fast and not self._verified and bool(blocks.finite_rows()[:2].all()):
            self._verified = True
            head = select_rows(batch, slice(0, 2))
            reference = per_sample_grads(self.model, head, self.loss_fn, self.names, **kwargs)
            got = blocks.flatten(self.names)[: len(reference)]
            tol = 1e-4 * float(reference.abs().max()) + 1e-8
            if not torch.allclose(got, reference, rtol=1e-3, atol=tol):
                warnings.warn(
                    "TracIn: the Linear/Conv2d fast path disagrees with torch.func on this model "
                    "(shared weights or samples interacting in a batch?); using torch.func for "
                    "every parameter. Pass method='vmap' to skip this check.",
                    stacklevel=3,
                )
                self._fast_ok = False
                blocks = _grad_blocks(
                    self.model, batch, self.loss_fn, self.names, fast=False, **kwargs
                )
        return blocks

    def _check_rows(self, batch: Any, name: str, offset: int) -> None:
        """NaN/inf in the data: an error naming ``name`` and the first bad row."""
        check_finite_batch(self.adapter.split(batch, self.model), name, offset)

    def _grads(
        self,
        batch: Any,
        values: dict[str, Tensor],
        columns: dict[str, float] | None,
        name: str = "data",
        offset: int = 0,
    ) -> _GradBlocks:
        blocks = self._blocks(batch, values)
        finite = blocks.finite_rows()
        if not bool(finite.all()):
            rows = (torch.nonzero(~finite).flatten() + offset).tolist()
            where = self._describe(self._current, self._sources.index(self._current))
            raise NonFiniteError(
                f"Per-sample gradients at the {where} are NaN or inf for `{name}` rows "
                f"{rows[:10]} ({len(rows)} in this chunk): the loss overflows there (e.g. log "
                "of 0, huge logits). Check `loss_fn` and those examples."
            )
        if columns is not None:
            blocks = blocks.scale(columns=columns)
        if self._sketch is not None:
            blocks = _GradBlocks([("projection", self._sketch(blocks, self._shapes))], [])
        elif self.projection_dim is not None:
            dense = blocks.flatten(self.names)
            if self._projection is None:
                self._projection = gaussian_matrix(
                    dense.shape[1], self.projection_dim, self.seed, self.device, dense.dtype
                )
            blocks = _GradBlocks([("projection", dense @ self._projection)], [])
        if self.normalize:
            blocks = blocks.scale(rows=blocks.sq_norms().sqrt().clamp_min(1e-12).reciprocal())
        return blocks

    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(
            total=total, desc=desc, unit="sample", disable=not self.show_progress, leave=False
        )

    # ------------------------------------------------------------------ stored features
    def _source_key(self, source: Any) -> str:
        """The content hash (SHA-256) of a checkpoint, as its store's manifest records it."""
        if isinstance(source, tuple):
            store, entry = source
            if entry.sha256:
                return str(entry.sha256)
            return hashlib.sha256((store.dirpath / entry.file).read_bytes()).hexdigest()
        if isinstance(source, Checkpoint):
            return tensor_digest({**source.buffers, **source.params})
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()

    def _feature_config(self) -> dict[str, Any]:
        return {
            "method": type(self).__name__,
            "projection": self.projection if self.projection_dim is not None else None,
            "projection_dim": self.projection_dim,
            "seed": self.seed,
            "parameters": list(self.names),
            "targets": self.targets,
            "normalize": self.normalize,
        }

    def _chunk_features(
        self,
        batch: Any,
        values: dict[str, Tensor],
        scale: dict[str, float] | None,
        name: str,
        offset: int,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(B, d)`` features of one chunk (projected gradients) and per-sample extras."""
        grads = self._grads(batch, values, scale, name, offset)
        dense = grads.dense() if self.projection_dim is not None else grads.flatten(self.names)
        return dense, {}

    def _features_at(
        self,
        data: Data,
        values: dict[str, Tensor],
        scale: dict[str, float] | None,
        name: str,
        check: bool,
        bar: tqdm | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        parts: list[Tensor] = []
        extras: dict[str, list[Tensor]] = {}
        offset = 0
        for batch in _chunks(data, self.batch_size):
            if check:
                self._check_rows(batch, name, offset)
            feats, more = self._chunk_features(batch, values, scale, name, offset)
            parts.append(feats.float())
            for key, value in more.items():
                extras.setdefault(key, []).append(value)
            offset += len(feats)
            if bar is not None:
                bar.update(len(feats))
        return torch.cat(parts), {k: torch.cat(v) for k, v in extras.items()}

    def features(self, data: Data, store: str | os.PathLike | None = None) -> GradientFeatures:
        """Per-sample gradient features of ``data`` at every checkpoint, computed once.

        Pass the result as ``train_data`` to :meth:`influence`, :meth:`top_k` or
        :meth:`self_influence`: a query then costs its own gradients and one matrix product
        per checkpoint. With ``projection_dim`` the features are ``(N, projection_dim)`` per
        checkpoint; without, the full ``(N, P)`` gradients (small models or ``parameters=``).

        Args:
            data: the examples (usually the training set).
            store: a directory: features computed before for the same checkpoints (by content
                hash), configuration and data (size and first chunk) are read back
                memory-mapped; otherwise they are computed and written there.

        Returns:
            :class:`~lightning_xai.influence.GradientFeatures`.

        Example:
            >>> import torch, torch.nn.functional as F
            >>> from torch import nn
            >>> net = nn.Linear(4, 3)
            >>> loss = lambda out, y: F.cross_entropy(out, y, reduction="none")
            >>> tracin = TracIn(net, [Checkpoint.from_module(net, lr=0.1)], loss,
            ...                 projection_dim=8, show_progress=False)
            >>> x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
            >>> train = tracin.features((x, y))
            >>> (len(train), train.dim)
            (10, 8)
            >>> tracin.top_k((x[:2], y[:2]), train, k=3).indices.shape
            torch.Size([2, 3])
        """
        _check_data(data, "data")
        keys = [self._source_key(s) for s in self._sources]
        config = {**self._feature_config(), "data": _fingerprint(data, self.batch_size)}
        if store is not None:
            found = GradientFeatures.find(store, config, keys)
            if found is not None:
                return GradientFeatures.load(found)
        features: list[Tensor] = []
        weights: list[float] = []
        extras: dict[str, list[Tensor]] = {}
        total = len(self._sources) * _num_examples(data)
        with self._bar(total, f"{type(self).__name__} features") as bar:
            for c, source in enumerate(self._sources):
                values, weight, scale = self._prepare(source)
                feats, more = self._features_at(data, values, scale, "data", c == 0, bar)
                features.append(feats.cpu())
                weights.append(weight)
                for key, value in more.items():
                    extras.setdefault(key, []).append(value.cpu())
        result = GradientFeatures(features, weights, keys, config, extras)
        if store is not None:
            result.save(store)
        return result

    def _check_features(self, feats: GradientFeatures, name: str) -> None:
        keys = [self._source_key(s) for s in self._sources]
        config = {k: v for k, v in feats.config.items() if k != "data"}
        if config != json_safe(self._feature_config()):
            raise ValueError(
                f"`{name}` holds features computed with {config}, but this "
                f"{type(self).__name__} uses {self._feature_config()}; compute them with this "
                "object's `features()`."
            )
        if feats.checkpoints != keys:
            raise CheckpointError(
                f"`{name}` holds features of other checkpoints (content hashes "
                f"{[k[:12] for k in feats.checkpoints]} vs {[k[:12] for k in keys]}); recompute "
                "them with `features()` after the checkpoints changed."
            )

    # ------------------------------------------------------------------ public API
    def self_influence(self, data: Data) -> SelfInfluenceResult:
        r"""Self-influence :math:`\sum_c \eta_c \lVert\nabla_\theta \ell(\theta_c, z)\rVert^2` of each example.

        Args:
            data: the examples (usually the training set), see the class docstring.

        Returns:
            :class:`SelfInfluenceResult` with ``scores`` of shape ``(N,)``.
        """
        if self.normalize:
            raise ValueError(
                "Self-influence with `normalize=True` is sum_c eta_c for every example; create "
                "the TracIn with normalize=False for self-influence."
            )
        _check_data(data, "data")
        total: Tensor | None = None
        if isinstance(data, GradientFeatures):
            self._check_features(data, "data")
            for feats, weight in zip(data.features, data.weights):
                part = torch.linalg.vecdot(feats, feats).double() * weight
                total = part if total is None else total + part
            return SelfInfluenceResult(self._finite(cast(Tensor, total), "self-influence"))
        with self._bar(len(self._sources) * _num_examples(data), "TracIn self-influence") as bar:
            for c, source in enumerate(self._sources):
                values, weight, scale = self._prepare(source)
                parts, offset = [], 0
                for batch in _chunks(data, self.batch_size):
                    if c == 0:
                        self._check_rows(batch, "data", offset)
                    grads = self._grads(batch, values, scale, "data", offset)
                    parts.append(grads.sq_norms().double() * weight)
                    offset += len(grads)
                    bar.update(len(grads))
                contribution = torch.cat(parts)
                total = contribution if total is None else total + contribution
        return SelfInfluenceResult(scores=self._finite(cast(Tensor, total), "self-influence"))

    def influence(self, test_data: Data, train_data: Data) -> InfluenceResult:
        r"""Influence :math:`\mathrm{TracIn}(z_j, z'_i)` of every training example on every test example.

        Args:
            test_data: the ``M`` examples to explain.
            train_data: the ``N`` training examples, or their stored
                :class:`~lightning_xai.influence.GradientFeatures` (see :meth:`features`).

        Returns:
            :class:`InfluenceResult` with ``scores`` of shape ``(M, N)``.
        """
        _check_data(test_data, "test_data")
        _check_data(train_data, "train_data")
        if isinstance(train_data, GradientFeatures):
            return self._influence_from(test_data, train_data)
        size = _num_examples(test_data) + _num_examples(train_data)
        total: Tensor | None = None
        with self._bar(len(self._sources) * size, "TracIn influence") as bar:
            for c, source in enumerate(self._sources):
                values, weight, scale = self._prepare(source)
                blocks, offset = [], 0
                for b in _chunks(test_data, self.batch_size):
                    if c == 0:
                        self._check_rows(b, "test_data", offset)
                    blocks.append(self._grads(b, values, scale, "test_data", offset))
                    offset += len(blocks[-1])
                test_grads = _cat_blocks(blocks)
                bar.update(len(test_grads))
                parts, offset = [], 0
                for batch in _chunks(train_data, self.batch_size):
                    if c == 0:
                        self._check_rows(batch, "train_data", offset)
                    grads = self._grads(batch, values, scale, "train_data", offset)
                    parts.append(test_grads.dot(grads).double() * weight)
                    offset += len(grads)
                    bar.update(len(grads))
                contribution = torch.cat(parts, dim=1)
                total = contribution if total is None else total + contribution
        return InfluenceResult(scores=self._finite(cast(Tensor, total), "influence"))

    def _influence_from(self, test_data: Data, train: GradientFeatures) -> InfluenceResult:
        self._check_features(train, "train_data")
        total: Tensor | None = None
        for c, source in enumerate(self._sources):
            values, _, scale = self._prepare(source)
            test, _ = self._features_at(test_data, values, scale, "test_data", c == 0)
            stored = train.features[c].to(self.device)
            part = (test.to(stored.dtype) @ stored.T).double() * train.weights[c]
            total = part if total is None else total + part
        return InfluenceResult(scores=self._finite(cast(Tensor, total), "influence"))

    @staticmethod
    def _finite(total: Tensor, what: str) -> Tensor:
        """``total`` as float32 on the CPU; an error when a sum overflowed."""
        scores = total.float().cpu()
        if not bool(torch.isfinite(scores).all()):
            bad = torch.nonzero(~torch.isfinite(scores))[:5].tolist()
            raise NonFiniteError(
                f"TracIn {what} scores overflowed to inf/NaN at {bad} (indices) although every "
                "gradient is finite: gradients or learning rates are huge. Use "
                "`projection_dim=`/`normalize=True`, or check the learning rates recorded."
            )
        return scores

    def top_k(
        self, test_data: Data, train_data: Data, k: int = 5, proponents: bool = True
    ) -> TopKResult:
        """The ``k`` strongest proponents (largest influence) or opponents (most negative).

        Args:
            test_data: the ``M`` examples to explain.
            train_data: the ``N`` training examples.
            k: how many training examples per test example.
            proponents: ``True`` for proponents, ``False`` for opponents.

        Returns:
            :class:`TopKResult` with ``(M, k)`` indices into ``train_data`` and their scores.
        """
        check_positive_int("k", k)
        n = _num_examples(train_data)
        if k > n:
            raise ValueError(f"`k`={k} exceeds the {n} training examples; pass k <= {n}.")
        scores = self.influence(test_data, train_data).scores
        values, indices = torch.topk(scores, k, dim=1, largest=proponents, sorted=True)
        return TopKResult(indices=indices, scores=values, proponents=proponents)
