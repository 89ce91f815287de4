"""Label-free example importance: SimplEx, latent nearest neighbours and label-free TracIn.

Each explains a test example by the training (corpus) examples that account for its
representation: SimplEx by the convex combination of corpus representations closest to it,
nearest neighbours by distance, TracIn by the gradients of the model's own unsupervised loss.
None needs labels or a ``Trainer``. The representation is the model's ``encode`` method when it
has one, else its ``forward``; ``encoder=`` chooses another (a module, a callable, a method name
such as ``"encode"`` or a submodule path such as ``"encoder"``). Data are tensors, batches as a
dataloader yields them (tuples, HuggingFace-style dicts), Datasets or DataLoaders: a
:class:`~lightning_xai.utilities.BatchAdapter` says what in a batch is encoded, and passes the
encoder's other arguments (an attention mask, a second input) through. All three share
``attribute(test, train) -> (n_test, n_train)`` and ``top_k(test, train, k)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_xai.influence.tracin import Checkpoints, TopKResult, TracIn
from lightning_xai.utilities.batches import (
    BatchAdapter,
    resolve_callable,
    select_rows,
)
from lightning_xai.utilities.batches import (
    batch_size as _batch_size,
)
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.tensor_checks import check_finite_rows
from lightning_xai.utilities.validation import check_positive_int as _check_positive_int

__all__ = [
    "LabelFreeTracIn",
    "LatentNearestNeighbours",
    "SimplEx",
    "encoded_features",
    "resolve_encoder",
    "simplex_weights",
]

Encoder = Callable[..., Any]
EncoderLike = nn.Module | Callable[..., Any] | str | None
#: Keys (or attributes) read, in order, for the representation in a dict or ``ModelOutput``.
FEATURE_KEYS: tuple[str, ...] = ("pooler_output", "last_hidden_state", "z", "latent", "logits")


def _attribute_path(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        if not part or not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


def resolve_encoder(model: Any = None, encoder: EncoderLike = None) -> Encoder:
    """The function from a batch's inputs to representations.

    Without ``encoder``: ``model.encode`` when ``model`` has one, else ``model`` itself. With it:
    a module or callable as is; a string is a method name or submodule path of ``model``
    (``"encode"``, ``"encoder"``, ``"bert.bert"``), else a dotted import path of a callable.

    Raises:
        TypeError: when neither gives a callable.
        ValueError: when a string names nothing in ``model`` and imports nothing callable.

    Example:
        >>> from lightning_xai.modules import AutoEncoder
        >>> ae = AutoEncoder(latent_dim=4)
        >>> resolve_encoder(ae) == ae.encode, resolve_encoder(ae, "encoder") is ae.encoder
        (True, True)
    """
    if isinstance(model, (str, bytes)):
        raise TypeError(
            f"`model` must be a module or a callable from inputs to representations, got the "
            f"string {model!r}; to name a method or submodule of a model use `encoder=`."
        )
    if encoder is None:
        if model is None:
            raise TypeError(
                "Give the model (its `encode` method, or its forward, is encoded) or `encoder=` "
                "(a module, a callable, a method name or a submodule path)."
            )
        encode = getattr(model, "encode", None)
        if callable(encode) and not isinstance(model, type):
            return encode
        if callable(model):
            return model
        raise TypeError(
            f"`model` must be a module or a callable from inputs to representations, such as "
            f"`module.encode`, got {type(model).__name__}."
        )
    if isinstance(encoder, str):
        found = _attribute_path(model, encoder) if model is not None else None
        if found is None:
            imported = resolve_callable(encoder)
            found = imported if imported is not encoder else None
        if not callable(found):
            owner = type(model).__name__ if model is not None else "no model"
            raise ValueError(
                f"`encoder={encoder!r}` names neither a method nor a submodule of {owner} nor an "
                "importable callable; use a method name such as 'encode', a submodule path "
                "such as 'encoder' or 'backbone.body', or a dotted import path."
            )
        return found
    if callable(encoder):
        return encoder
    raise TypeError(
        f"`encoder` must be a module, a callable, a method name or a submodule path, got "
        f"{type(encoder).__name__}."
    )


def encoded_features(out: Any) -> torch.Tensor:
    """``(N, d)`` features from what an encoder returns: a tensor (flattened after the batch
    dimension), the first element of a tuple, or the first of :data:`FEATURE_KEYS` of a dict or
    ``ModelOutput`` (``pooler_output`` of a HuggingFace encoder).

    Example:
        >>> encoded_features({"last_hidden_state": torch.zeros(2, 3, 4)}).shape
        torch.Size([2, 12])
    """
    value = out
    if isinstance(value, Mapping):
        value = next(
            (value[k] for k in FEATURE_KEYS if isinstance(value.get(k), torch.Tensor)),
            next((v for v in value.values() if isinstance(v, torch.Tensor)), None),
        )
    elif isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        raise TypeError(
            f"The encoder must return (N, ...) features (a tensor, a tuple or a dict/ModelOutput "
            f"holding one), got {type(out).__name__}"
            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}; choose another with "
            "`encoder=`."
        )
    return value.reshape(len(value), -1)


def _module_of(encoder: Encoder) -> nn.Module | None:
    if isinstance(encoder, nn.Module):
        return encoder
    owner = getattr(encoder, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def _device_of(encoder: Encoder, fallback: torch.device) -> torch.device:
    module = _module_of(encoder)
    if module is not None:
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return fallback


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def _iter_batches(data: Any, batch_size: int) -> Iterator[Any]:
    """Batches of ``data``: a tensor ``(n, ...)``, one collated batch (a tuple/list or dict of
    tensors), a ``Dataset`` (read in order, default collation) or a ``DataLoader`` (as is)."""
    if isinstance(data, DataLoader):
        yield from data
        return
    if isinstance(data, torch.Tensor):
        if data.ndim == 0:
            raise ValueError("Inputs must hold at least one example, got a 0-d tensor.")
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size]
        return
    if isinstance(data, (Mapping, tuple, list)):
        n = _batch_size(data)
        for i in range(0, n, batch_size):
            yield select_rows(data, slice(i, i + batch_size), n)
        return
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        yield from DataLoader(data, batch_size=batch_size, shuffle=False)
        return
    raise TypeError(
        f"Data must be a tensor, a batch (tuple/list or dict of tensors), a Dataset or a "
        f"DataLoader, got {type(data).__name__}."
    )


def _first_device(batch: Any) -> torch.device:
    if isinstance(batch, torch.Tensor):
        return batch.device
    values = batch.values() if isinstance(batch, Mapping) else batch
    for value in values if isinstance(values, (tuple, list)) or isinstance(batch, Mapping) else ():
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def _check_2d(name: str, tensor: object) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty (n, d) tensor of representations, got shape "
            f"{tuple(tensor.shape)}; encode the inputs first or call `attribute` on inputs."
        )
    return tensor


def _check_adapter(adapter: Any) -> BatchAdapter:
    if adapter is None:
        return BatchAdapter()
    if not isinstance(adapter, BatchAdapter):
        raise TypeError(f"`adapter` must be a BatchAdapter, got {type(adapter).__name__}.")
    return adapter


class _LatentExplainer:
    """Shared plumbing: batched encoding on the encoder's device, scores, top-k queries."""

    def __init__(
        self, model: Any, batch_size: int, encoder: EncoderLike, adapter: BatchAdapter | None
    ) -> None:
        _check_positive_int("batch_size", batch_size)
        self.model = model
        self.encoder = resolve_encoder(model, encoder)
        self.adapter = _check_adapter(adapter)
        self.batch_size = batch_size

    @torch.no_grad()
    def encode(self, inputs: Any) -> torch.Tensor:
        """Representations ``(n, d)`` of ``inputs`` (a tensor, a batch, a Dataset or a
        DataLoader), in batches, on the encoder's device, with the model in eval mode."""
        chunks = []
        module = self.model if isinstance(self.model, nn.Module) else _module_of(self.encoder)
        with eval_mode(module):
            for batch in _iter_batches(inputs, self.batch_size):
                device = _device_of(self.encoder, _first_device(batch))
                split = self.adapter.split(_to(batch, device), self.encoder)
                chunks.append(encoded_features(split.call(self.encoder, raw=True)))
        if not chunks or sum(len(c) for c in chunks) == 0:
            raise ValueError("Inputs must hold at least one example, got none.")
        return torch.cat(chunks).detach()

    def attribute(self, test: Any, train: Any) -> torch.Tensor:
        """Importance of every training example for every test example: ``(n_test, n_train)``.

        Args:
            test: test data: inputs ``(n_test, ...)``, a batch, a Dataset or a DataLoader.
            train: training (corpus) data, in any of the same forms.
        """
        return self.attribute_latent(self.encode(test), self.encode(train))

    def attribute_latent(
        self, test_latent: torch.Tensor, train_latent: torch.Tensor
    ) -> torch.Tensor:
        """As :meth:`attribute`, from representations ``(n_test, d)`` and ``(n_train, d)``."""
        test_latent = _check_2d("test_latent", test_latent)
        train_latent = _check_2d("train_latent", train_latent).to(test_latent.device)
        # a NaN row would come back as an arbitrary "most important" example: refuse it
        fix = (
            "the inputs at that row (or the encoder's output for them) are not finite; drop or "
            "repair those examples."
        )
        check_finite_rows("test representations", test_latent, fix)
        check_finite_rows("training representations", train_latent, fix)
        if test_latent.shape[1] != train_latent.shape[1]:
            raise ValueError(
                f"Test and train representations differ in size: {test_latent.shape[1]} vs "
                f"{train_latent.shape[1]}; encode both with the same encoder."
            )
        rows = [
            self._scores(test_latent[i : i + self.batch_size], train_latent)
            for i in range(0, len(test_latent), self.batch_size)
        ]
        return torch.cat(rows)

    def _scores(self, test_latent: torch.Tensor, train_latent: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def top_k(self, test: Any, train: Any, k: int = 5) -> TopKResult:
        """The ``k`` most important training examples of each test example, best first.

        Returns a :class:`~lightning_xai.influence.TopKResult` with ``(n_test, k)`` indices into
        ``train`` and their scores. Ties in score (SimplEx gives most of the corpus weight zero)
        are broken by latent distance, nearest first.
        """
        _check_positive_int("k", k)
        h_test, h_train = self.encode(test), self.encode(train)
        if k > len(h_train):
            raise ValueError(
                f"`k` must be at most the number of training examples ({len(h_train)}), got {k}."
            )
        scores = self.attribute_latent(h_test, h_train)
        distance = torch.cdist(h_test, h_train)
        order = distance.argsort(dim=1, stable=True)
        ranked = scores.gather(1, order).argsort(dim=1, descending=True, stable=True)[:, :k]
        indices = order.gather(1, ranked)
        return TopKResult(indices=indices, scores=scores.gather(1, indices), proponents=True)


def _affine_min_norm(
    points: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Coefficients (summing to one) of the min-norm point of the affine hull of valid points.

    ``points`` is ``(k, S, d)``; invalid slots get coefficient zero. With ``M = P P^T + s 1 1^T``,
    the coefficients are ``M^{-1} 1`` normalised (Wolfe's formulation; ``s`` only conditions it).
    """
    vv = valid.to(points.dtype)
    gram = (points @ points.transpose(1, 2) + scale) * (vv[:, :, None] * vv[:, None, :])
    gram = gram + torch.diag_embed(1.0 - vv + 1e-12 * scale)
    chol, _ = torch.linalg.cholesky_ex(gram)
    coef = torch.cholesky_solve(vv[:, :, None], chol)[..., 0]
    return coef / coef.sum(1, keepdim=True)


def simplex_weights(
    test_latent: torch.Tensor,
    corpus_latent: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-8,
) -> torch.Tensor:
    r"""Convex weights that best rebuild each test representation from corpus representations.

    Solves, for every row :math:`h_i` of ``test_latent`` at once,

    .. math:: w_i = \arg\min_{w \in \Delta^{n}} \big\|h_i - \textstyle\sum_j w_{j} c_j\big\|^2,
        \qquad \Delta^n = \{w \ge 0, \textstyle\sum_j w_j = 1\},

    that is, the point of the convex hull of the corpus nearest to :math:`h_i`, with Wolfe's
    min-norm-point algorithm: an active set of at most ``d + 1`` corpus examples, grown by the one
    that most decreases the error and pruned when a weight reaches zero, with an exact
    affine solve each step. It terminates in finitely many steps; the loop stops when a row's
    duality gap is below ``tol`` times the corpus variance. All rows run together (rows that have
    converged drop out), on the device of the inputs. A large shared corpus (over 2048
    examples) is first searched among each row's 256 nearest examples and the result then
    continued over the whole corpus, which certifies it: the same answer, found sooner. Weights
    are sparse: at most ``d + 1`` are non-zero.

    Args:
        test_latent: ``(m, d)`` representations to decompose.
        corpus_latent: ``(n, d)`` corpus shared by all rows, or ``(m, n, d)``: one corpus per
            row.
        max_iter: cap on the number of active-set additions.
        tol: relative tolerance on the duality gap.

    Returns:
        ``(m, n)`` weights; each row is non-negative and sums to one.

    Example:
        >>> corpus = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> w = simplex_weights(torch.tensor([[0.25, 0.5], [2.0, 2.0]]), corpus)
        >>> torch.allclose(w, torch.tensor([[0.25, 0.25, 0.5], [0.0, 0.5, 0.5]]), atol=1e-6)
        True
    """
    h, corpus = test_latent, corpus_latent
    m, d = h.shape
    n = corpus.shape[-2]
    flat = corpus.double().reshape(-1, d)
    scale = (flat - flat.mean(0)).pow(2).sum(1).mean().clamp_min(1e-30)
    screen = 256  # large corpora: search each row's nearest examples first
    if corpus.ndim == 2 and n > 8 * screen:
        near = (corpus.pow(2).sum(1) - 2 * h @ corpus.T).topk(screen, dim=1, largest=False).indices
        state = _ActiveSet.start(h, corpus[near])
        _wolfe(h, corpus[near], state, scale, max_iter, tol)
        state.index = near.gather(1, state.index)
    else:
        state = _ActiveSet.start(h, corpus)
    _wolfe(h, corpus, state, scale, max_iter, tol)
    weights = torch.zeros(m, n, dtype=torch.float64, device=h.device)
    weights.scatter_add_(1, state.index, state.lam)
    return weights.to(h.dtype)


@dataclass
class _ActiveSet:
    """Wolfe's corral per row: ``slots`` corpus indices, which are in use, weights, and points
    ``c_j - h`` (float64)."""

    index: torch.Tensor
    valid: torch.Tensor
    lam: torch.Tensor
    points: torch.Tensor

    @classmethod
    def start(cls, h: torch.Tensor, corpus: torch.Tensor) -> _ActiveSet:
        """Each row starts at its nearest corpus example."""
        m, d = h.shape
        rows = torch.arange(m, device=h.device)
        if corpus.ndim == 2:
            first = (corpus.pow(2).sum(1) - 2 * h @ corpus.T).argmin(1)
            atom = corpus[first]
        else:
            first = (corpus - h[:, None]).pow(2).sum(-1).argmin(1)
            atom = corpus[rows, first]
        slots = min(d + 2, corpus.shape[-2] + 1)
        state = cls(
            index=torch.zeros(m, slots, dtype=torch.long, device=h.device),
            valid=torch.zeros(m, slots, dtype=torch.bool, device=h.device),
            lam=torch.zeros(m, slots, dtype=torch.float64, device=h.device),
            points=torch.zeros(m, slots, d, dtype=torch.float64, device=h.device),
        )
        state.index[:, 0], state.valid[:, 0], state.lam[:, 0] = first, True, 1.0
        state.points[:, 0] = atom.double() - h.double()
        return state


def _wolfe(
    h: torch.Tensor,
    corpus: torch.Tensor,
    state: _ActiveSet,
    scale: torch.Tensor,
    max_iter: int,
    tol: float,
) -> None:
    """Run Wolfe's major/minor cycles on ``state`` (in place) over a shared ``(n, d)`` corpus or
    per-row ``(m, n, d)`` corpora; converged rows drop out of the work."""
    shared = corpus.ndim == 2
    h64, c64 = h.double(), corpus.double()
    corpus_t = corpus.T.contiguous() if shared else corpus
    slots = state.index.shape[1]
    threshold = tol * scale
    active = torch.arange(len(h), device=h.device)
    for _ in range(max_iter):
        x = torch.bmm(state.lam[active, None, :], state.points[active])[:, 0]
        xs = x.to(corpus.dtype)
        scores = xs @ corpus_t if shared else torch.bmm(corpus[active], xs[:, :, None])[..., 0]
        best = scores.argmin(1)
        atom = (c64[best] if shared else c64[active, best]) - h64[active]
        gap = ((x - atom) * x).sum(1)
        known = ((state.index[active] == best[:, None]) & state.valid[active]).any(1)
        go_on = (gap > threshold) & ~known
        active, best, atom = active[go_on], best[go_on], atom[go_on]
        if active.numel() == 0:
            return
        free = (~state.valid[active]).to(torch.uint8).argmax(1)
        state.index[active, free] = best
        state.valid[active, free] = True
        state.lam[active, free] = 0.0
        state.points[active, free] = atom
        minor = active
        for _ in range(slots + 1):
            coef = _affine_min_norm(state.points[minor], state.valid[minor], scale)
            old, ok = state.lam[minor], state.valid[minor]
            ratio = torch.where(ok & (coef <= 0) & (coef < old), old / (old - coef), torch.inf)
            theta = ratio.amin(1).clamp(max=1.0)
            new = theta[:, None] * coef + (1 - theta[:, None]) * old
            ok = ok & (new > 1e-14)
            state.lam[minor] = new.masked_fill(~ok, 0.0)
            state.valid[minor] = ok
            minor = minor[theta < 1]
            if minor.numel() == 0:
                break


class SimplEx(_LatentExplainer):
    r"""SimplEx: each test representation as a convex mix of training representations.

    The weight of training example :math:`j` for test example :math:`i` is its share in the
    convex combination of corpus representations closest to :math:`f(x_i)`, solved exactly for
    all test examples of a batch at once on the encoder's device (see :func:`simplex_weights`).
    Each row of :meth:`attribute` is non-negative and sums to one, with at most ``d + 1``
    non-zero weights; :meth:`residual` says how well the corpus rebuilds the example, and
    :meth:`top_k` ranks examples of equal (zero) weight by latent distance. When a representation
    lies inside the convex hull of the corpus, several decompositions rebuild it exactly and the
    one returned over the whole corpus may mix distant examples; that is why the default corpus
    is local (the 32 nearest training examples of each test example), which keeps the weights
    on similar examples. Pass ``corpus_top_k=None`` for the whole training set.

    Args:
        model: the model whose representation is explained: its ``encode`` method when it has
            one, else its forward (or any callable from inputs to ``(batch, ...)`` features).
        corpus_top_k: if set, each test example is decomposed over its ``corpus_top_k`` nearest
            training examples in representation space only (a local corpus: faster, and the
            weights stay on similar examples); ``None`` uses the whole training set. On the bundled
            digits, top-10 label agreement is about 0.86 with 32 and 0.67 with ``None``.
        n_keep: if set, at most this many weights per test example are non-zero: the problem
            is solved, the ``n_keep`` largest weights are kept and it is solved again over them.
        batch_size: test examples (and encoder inputs) per batch.
        max_iter: cap on the solver's active-set additions.
        tol: relative tolerance of the solver.
        encoder: overrides the representation: a module, a callable, a method name of
            ``model`` (``"encode"``) or a submodule path (``"encoder"``).
        adapter: how to read batches (:class:`~lightning_xai.utilities.BatchAdapter`): the
            explained input is encoded, other encoder arguments are passed through.

    Example:
        >>> encoder = torch.nn.Flatten()
        >>> train, test = torch.rand(50, 1, 2, 2), torch.rand(7, 1, 2, 2)
        >>> weights = SimplEx(encoder).attribute(test, train)
        >>> weights.shape, torch.allclose(weights.sum(1), torch.ones(7))
        (torch.Size([7, 50]), True)
    """

    def __init__(
        self,
        model: Any = None,
        corpus_top_k: int | None = 32,
        n_keep: int | None = None,
        batch_size: int = 1024,
        max_iter: int = 500,
        tol: float = 1e-8,
        *,
        encoder: EncoderLike = None,
        adapter: BatchAdapter | None = None,
    ) -> None:
        super().__init__(model, batch_size, encoder, adapter)
        _check_positive_int("corpus_top_k", corpus_top_k, allow_none=True)
        _check_positive_int("n_keep", n_keep, allow_none=True)
        _check_positive_int("max_iter", max_iter)
        if not tol > 0:
            raise ValueError(f"`tol` must be positive, got {tol!r}.")
        self.corpus_top_k = corpus_top_k
        self.n_keep = n_keep
        self.max_iter = max_iter
        self.tol = tol

    def _solve(
        self, test_latent: torch.Tensor, train_latent: torch.Tensor, candidates: torch.Tensor | None
    ) -> torch.Tensor:
        if candidates is None:
            return simplex_weights(test_latent, train_latent, self.max_iter, self.tol)
        local = simplex_weights(test_latent, train_latent[candidates], self.max_iter, self.tol)
        weights = torch.zeros(
            len(test_latent), len(train_latent), dtype=local.dtype, device=local.device
        )
        return weights.scatter_add_(1, candidates, local)

    def _scores(self, test_latent: torch.Tensor, train_latent: torch.Tensor) -> torch.Tensor:
        n = train_latent.shape[0]
        candidates = None
        if self.corpus_top_k is not None and self.corpus_top_k < n:
            candidates = (
                torch.cdist(test_latent, train_latent)
                .topk(self.corpus_top_k, dim=1, largest=False)
                .indices
            )
        weights = self._solve(test_latent, train_latent, candidates)
        if self.n_keep is not None and self.n_keep < (
            n if candidates is None else candidates.shape[1]
        ):
            weights = self._solve(
                test_latent, train_latent, weights.topk(self.n_keep, dim=1).indices
            )
        return weights

    def residual(self, test: Any, train: Any) -> torch.Tensor:
        """Distance between each test representation and its decomposition: ``(n_test,)``."""
        h_test, h_train = self.encode(test), self.encode(train)
        return (h_test - self.attribute_latent(h_test, h_train) @ h_train).norm(dim=1)


class LatentNearestNeighbours(_LatentExplainer):
    """Exact nearest neighbours in representation space.

    :meth:`attribute` scores every training example by its negative distance to the test
    representation (``"euclidean"``) or by cosine similarity (``"cosine"``): finite everywhere,
    duplicates included, and higher is more important. :meth:`top_k` is the exact k-NN.

    Args:
        model: the model whose representation is explained: its ``encode`` method when it has
            one (an :class:`~lightning_xai.modules.AutoEncoder`'s code, not its reconstruction),
            else its forward (or any callable from inputs to ``(batch, ...)`` features).
        metric: ``"euclidean"`` or ``"cosine"``.
        batch_size: test examples (and encoder inputs) per batch.
        encoder: overrides the representation: a module, a callable, a method name of
            ``model`` (``"encode"``) or a submodule path (``"encoder"``).
        adapter: how to read batches (:class:`~lightning_xai.utilities.BatchAdapter`).

    Example:
        >>> encoder = torch.nn.Flatten()
        >>> train = torch.arange(10.0).reshape(10, 1)
        >>> LatentNearestNeighbours(encoder).top_k(torch.tensor([[3.2]]), train, k=3).indices
        tensor([[3, 4, 2]])
    """

    def __init__(
        self,
        model: Any = None,
        metric: Literal["euclidean", "cosine"] = "euclidean",
        batch_size: int = 1024,
        *,
        encoder: EncoderLike = None,
        adapter: BatchAdapter | None = None,
    ) -> None:
        super().__init__(model, batch_size, encoder, adapter)
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"`metric` must be 'euclidean' or 'cosine', got {metric!r}.")
        self.metric = metric

    def _scores(self, test_latent: torch.Tensor, train_latent: torch.Tensor) -> torch.Tensor:
        if self.metric == "cosine":
            unit_test = nn.functional.normalize(test_latent, dim=1)
            return unit_test @ nn.functional.normalize(train_latent, dim=1).T
        return -torch.cdist(test_latent, train_latent)


class _LossOutput(nn.Module):
    """``forward(x)`` is ``module.<loss>(x)``, with ``module``'s children shared under their names.

    TracIn swaps checkpoint values into the children by name (``encoder.head.weight``), which are
    the very modules the loss method uses, so checkpoints written for ``module`` fit as they are.
    """

    def __init__(self, module: nn.Module, loss: str) -> None:
        super().__init__()
        if any(True for _ in module.parameters(recurse=False)):
            raise ValueError(
                f"{type(module).__name__} holds parameters directly (not in submodules); "
                "label-free TracIn needs them inside submodules such as `encoder`/`decoder`."
            )
        for name, child in module.named_children():
            self.add_module(name, child)
        self._loss = getattr(module, loss)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != 1:
            raise ValueError(
                f"Label-free TracIn differentiates `per_sample_loss(x)` of one input, but the "
                f"adapter explains {len(inputs)}; choose one with "
                "BatchAdapter(inputs=<index or key>)."
            )
        return self._loss(inputs[0])


def _own_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return out.reshape(len(target))


class LabelFreeTracIn(TracIn):
    r"""TracIn with the model's own unsupervised loss: no labels needed.

    The per-example loss is ``module.per_sample_loss(x)`` (the reconstruction error of an
    :class:`~lightning_xai.modules.AutoEncoder`, plus :math:`\beta`-weighted KL for a
    :class:`~lightning_xai.modules.VariationalAutoEncoder`), differentiated by default with
    respect to the encoder's parameters only, so scores say which training examples shaped the
    representation of a test example:

    .. math:: \mathrm{TracIn}(x, x') = \sum_c \eta_c\, \nabla_{\theta_e} \ell(\theta_c, x)
        \cdot \nabla_{\theta_e} \ell(\theta_c, x')

    Data are tensors, batches (tuples, dicts), Datasets or DataLoaders; the ``adapter``'s
    explained input is the ``x`` of the loss (labels are ignored). Everything else is
    :class:`~lightning_xai.influence.TracIn`; :meth:`attribute` returns the
    ``(n_test, n_train)`` scores like :class:`SimplEx` and :class:`LatentNearestNeighbours`.

    Args:
        module: the model; it needs a ``per_sample_loss(x) -> (B,)`` method (or the method
            named by ``loss``) whose parameters live in submodules.
        checkpoints: as for :class:`~lightning_xai.influence.TracIn`.
        parameters: parameters whose gradients count; default ``"encoder"`` (every parameter
            of ``module.encoder``).
        loss: name of the per-sample loss method.
        encoder: the submodule (or its path, e.g. ``"backbone"``) whose parameters count,
            instead of ``parameters``.
        adapter: how to read batches (:class:`~lightning_xai.utilities.BatchAdapter`); it must
            explain one input.
        **kwargs: further :class:`~lightning_xai.influence.TracIn` arguments
            (``projection_dim``, ``batch_size``, ``show_progress``, ...).

    Example:
        >>> from lightning_xai.influence.checkpoints import Checkpoint
        >>> from lightning_xai.modules.autoencoder import AutoEncoder
        >>> ae = AutoEncoder(latent_dim=4)
        >>> tracin = LabelFreeTracIn(ae, [Checkpoint.from_module(ae, lr=0.1)], show_progress=False)
        >>> tracin.attribute(torch.rand(3, 1, 8, 8), torch.rand(10, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        module: nn.Module,
        checkpoints: Checkpoints,
        parameters: str | list[str] | None = "encoder",
        loss: str = "per_sample_loss",
        *,
        encoder: str | nn.Module | None = None,
        adapter: BatchAdapter | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(getattr(module, loss, None)):
            raise TypeError(
                f"`module` ({type(module).__name__}) has no method {loss!r}; label-free TracIn "
                "needs a per-sample unsupervised loss `module.per_sample_loss(x) -> (B,)` or "
                "`loss=` naming one."
            )
        for key in ("loss_fn", "targets"):
            if key in kwargs:
                raise TypeError(
                    f"LabelFreeTracIn sets `{key}` itself; use TracIn for a custom one."
                )
        if encoder is not None:
            if parameters != "encoder":
                raise TypeError(
                    f"Give `encoder` ({encoder!r}) or `parameters` ({parameters!r}), not both: "
                    "both choose the parameters whose gradients count."
                )
            parameters = _submodule_path(module, encoder)
        super().__init__(
            _LossOutput(module, loss),
            checkpoints,
            _own_loss,
            parameters=parameters,
            targets="inputs",
            adapter=_check_adapter(adapter),
            **kwargs,
        )

    def attribute(self, test: Any, train: Any) -> torch.Tensor:
        """Influence of every training example on every test example: ``(n_test, n_train)``."""
        return self.influence(test, train).scores


def _submodule_path(module: nn.Module, encoder: str | nn.Module) -> str:
    if isinstance(encoder, str):
        found = _attribute_path(module, encoder)
        if isinstance(found, nn.Module):
            return encoder
        raise ValueError(
            f"`encoder={encoder!r}` is not a submodule of {type(module).__name__}; label-free "
            "TracIn needs the submodule whose parameters count, e.g. encoder='encoder'."
        )
    for name, child in module.named_modules():
        if child is encoder and name:
            return name
    raise ValueError(
        f"`encoder` ({type(encoder).__name__}) is not a submodule of {type(module).__name__}; "
        "pass one of its submodules or its path."
    )
