"""Per-sample gradients of a per-sample loss: ``torch.func`` (``vmap`` over ``grad``) for any
model, and a structured form for ``Linear``/``Conv2d`` layers that influence methods use to
avoid materialising large gradients.

The loss protocol used across :mod:`lightning_xai.influence`:

* a batch is whatever the dataloader yields (a tensor, ``(x, y, ...)``, a dict such as
  ``{"input_ids", "attention_mask", "labels"}``); a
  :class:`~lightning_xai.utilities.batches.BatchAdapter` (default ``BatchAdapter()``) splits it
  into the explained inputs, the other model arguments and the labels, and reads class scores
  from the model's output (a tensor, a tuple, ``logits`` of a dict or ``ModelOutput``);
* ``loss_fn(scores, target)`` returns one loss per sample, shape ``(B,)`` (e.g.
  ``F.cross_entropy(scores, y, reduction="none")``); a reduced (scalar) loss is rejected;
* ``targets="labels"`` passes the adapter's labels as ``target`` (supervised; checked against
  the scores first); ``targets="inputs"`` passes the (first) explained input (label-free, e.g.
  the reconstruction error of an autoencoder).

Gradients are taken in eval mode, where the samples of a batch do not interact, with respect
to parameters only: integer inputs (token ids) need no gradient of their own.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lightning_xai.influence.errors import NonFiniteError
from lightning_xai.utilities.batches import AdaptedBatch, BatchAdapter, check_labels
from lightning_xai.utilities.gradients import grad_enabled, to_autograd
from lightning_xai.utilities.modes import eval_mode

LossFn = Callable[[Tensor, Tensor], Tensor]
Targets = Literal["labels", "inputs"]
ParameterSpec = str | Sequence[str] | None

__all__ = [
    "LossFn",
    "ParameterSpec",
    "Targets",
    "check_finite_batch",
    "eval_mode",
    "per_sample_grads",
    "select_parameters",
]

_TARGETS = ("labels", "inputs")


def select_parameters(model: nn.Module, parameters: ParameterSpec = None) -> list[str]:
    """Resolve a parameter selection to parameter names, in the model's order.

    Args:
        model: the module whose parameters are selected.
        parameters: ``None`` for every parameter that requires grad, ``"all"`` for every
            parameter, ``"last"`` for the parameters of the last module (in registration
            order) that owns parameters, or one or more names, module names or glob patterns
            (``"classifier.*"``, ``"features.0.weight"``, ``"classifier"``).

    Returns:
        The selected parameter names.

    Raises:
        ValueError: when nothing is selected, or a name/pattern matches no parameter.
        TypeError: when ``parameters`` is not ``None``, a string or a sequence of strings.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> select_parameters(net, "last")
        ['2.weight', '2.bias']
        >>> select_parameters(net, ["0.*", "2.bias"])
        ['0.weight', '0.bias', '2.bias']
    """
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    if parameters is None:
        selected = [n for n, p in named if p.requires_grad]
    elif parameters == "all":
        selected = names
    elif parameters == "last":
        owners = [m for m, mod in model.named_modules() if any(True for _ in mod.parameters(False))]
        prefix = f"{owners[-1]}." if owners and owners[-1] else ""
        selected = (
            [n for n in names if n.startswith(prefix) and "." not in n[len(prefix) :]]
            if owners
            else []
        )
    else:
        patterns = [parameters] if isinstance(parameters, str) else parameters
        if not isinstance(patterns, Sequence) or not all(isinstance(p, str) for p in patterns):
            raise TypeError(
                "`parameters` must be None, 'all', 'last', a name/glob pattern or a list of "
                f"them; got {parameters!r}."
            )
        chosen: set[str] = set()
        for pattern in patterns:
            hits = {
                n for n in names if fnmatch.fnmatchcase(n, pattern) or n.startswith(pattern + ".")
            }
            if not hits:
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise ValueError(
                    f"`parameters` pattern {pattern!r} matches no parameter of "
                    f"{type(model).__name__}; available names: {shown}. Use a parameter or "
                    "module name, a glob such as 'classifier.*', 'last' or 'all'."
                )
            chosen |= hits
        selected = [n for n in names if n in chosen]
    if not selected:
        raise ValueError(
            f"`parameters`={parameters!r} selects no parameter of {type(model).__name__} "
            "(does it have trainable parameters?). Pass 'all' or explicit names."
        )
    return selected


def _check_targets(targets: str) -> None:
    if targets not in _TARGETS:
        raise ValueError(f"`targets` must be one of {_TARGETS}; got {targets!r}.")


def _check_loss(loss: Tensor, n: int) -> Tensor:
    if not isinstance(loss, Tensor) or loss.shape != (n,):
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(
            f"`loss_fn` must return one loss per sample, shape ({n},); got {shape}. Use "
            "reduction='none' (e.g. F.cross_entropy(out, y, reduction='none')) or reduce "
            "over the non-batch dimensions only."
        )
    return loss


def _values(model: nn.Module, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached parameters and buffers, replaced by ``values`` where given, usable by autograd."""
    out = {n: values.get(n, p).detach() for n, p in model.named_parameters()}
    out.update({n: values.get(n, b).detach() for n, b in model.named_buffers()})
    return to_autograd(out)


@dataclass
class _Batch:
    """A batch split by the adapter, with its per-sample loss target, ready for autograd."""

    adapted: AdaptedBatch
    inputs: tuple[Tensor, ...]
    extras: tuple[Any, ...]
    target: Tensor

    def __len__(self) -> int:
        return len(self.adapted)

    def batched(self, value: Any) -> bool:
        """Whether ``value`` has the batch dimension (and is split into samples)."""
        return isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == len(self)

    def rows(self, index: slice) -> tuple[tuple[Any, ...], tuple[Any, ...], Tensor]:
        pick = lambda v: v[index] if self.batched(v) else v  # noqa: E731
        return (
            tuple(pick(v) for v in self.inputs),
            tuple(pick(v) for v in self.extras),
            self.target[index],
        )

    def scores(
        self, model: nn.Module, state: Mapping[str, Tensor], inputs: Any, extras: Any
    ) -> Any:
        args, kwargs = self.adapted.arguments(inputs, extras)
        out = functional_call(model, dict(state), args, kwargs, strict=False)
        return self.adapted.read_output(out)


def _split(
    model: nn.Module, batch: Any, adapter: BatchAdapter | None, targets: str
) -> AdaptedBatch:
    adapter = BatchAdapter() if adapter is None else adapter
    if not isinstance(adapter, BatchAdapter):
        raise TypeError(f"`adapter` must be a BatchAdapter or None, got {type(adapter).__name__}.")
    adapted = adapter.split(batch, model)
    if targets == "labels" and adapted.labels is None:
        raise ValueError(
            "`targets='labels'` needs labels, but the adapter found none in the batch "
            f"(adapter {adapter!r}). Point the adapter at them, e.g. BatchAdapter(labels=1) or "
            "BatchAdapter(labels='labels'), or use targets='inputs' for a label-free loss."
        )
    return adapted


def _prepare(
    model: nn.Module, adapted: AdaptedBatch, targets: str, state: Mapping[str, Tensor]
) -> _Batch:
    """Inference-mode tensors cloned, the target chosen and (labels) checked against scores."""
    inputs, extras, labels = to_autograd((adapted.inputs, adapted.extras, adapted.labels))
    if targets == "inputs":
        return _Batch(adapted, inputs, extras, inputs[0])
    prepared = _Batch(adapted, inputs, extras, labels)
    with torch.no_grad():  # class count from one sample; every label is checked against it
        one_inputs, one_extras, _ = prepared.rows(slice(0, 1))
        scores = prepared.scores(model, state, one_inputs, one_extras)
    if isinstance(scores, Tensor) and scores.dim() > 0:
        check_labels(
            labels, scores.expand(len(adapted), *scores.shape[1:]), source="targets='labels'"
        )
    return prepared


def _bad_rows(tensor: Any, n: int) -> Tensor | None:
    """Rows (along the batch dimension) of a floating tensor that hold NaN or inf."""
    if not isinstance(tensor, Tensor) or not (tensor.is_floating_point() or tensor.is_complex()):
        return None
    if tensor.dim() == 0 or tensor.shape[0] != n:
        return None if bool(torch.isfinite(tensor).all()) else torch.arange(n)
    finite = torch.isfinite(tensor.reshape(n, -1)).all(dim=1) if tensor.numel() else None
    if finite is None or bool(finite.all()):
        return None
    return torch.nonzero(~finite).flatten().cpu()


def check_finite_batch(adapted: AdaptedBatch, what: str = "batch", offset: int = 0) -> None:
    """Raise :class:`~lightning_xai.influence.errors.NonFiniteError` naming ``what`` and the
    first bad row (counted from ``offset``) when an explained input, another model argument or
    the labels hold NaN or inf.

    Example:
        >>> from lightning_xai.utilities.batches import BatchAdapter
        >>> x = torch.zeros(4, 2); x[2, 1] = float("nan")
        >>> check_finite_batch(BatchAdapter().split((x, torch.zeros(4)), nn.Linear(2, 2)), "data")
        Traceback (most recent call last):
        ...
        lightning_xai.influence.errors.NonFiniteError: `data` row 2 holds NaN or inf in explained input 0 (bad rows among rows 0-3: [2]); remove or repair those rows (e.g. torch.nan_to_num, or drop them from the dataset) before computing influence.
    """
    n = len(adapted)
    groups = [
        *((f"explained input {i}", t) for i, t in enumerate(adapted.inputs)),
        *((f"model argument {i}", t) for i, t in enumerate(adapted.extras)),
        ("labels", adapted.labels),
    ]
    for label, tensor in groups:
        bad = _bad_rows(tensor, n)
        if bad is not None:
            rows = (bad + offset).tolist()
            raise NonFiniteError(
                f"`{what}` row {rows[0]} holds NaN or inf in {label} (bad rows among rows "
                f"{offset}-{offset + n - 1}: {rows[:10]}); remove or repair those rows (e.g. "
                "torch.nan_to_num, or drop them from the dataset) before computing influence."
            )


def _is_vmap_limit(err: Exception) -> bool:
    text = str(err)
    return "vmap" in text or "data-dependent" in text or "functorch" in text


_loop_warned: set[str] = set()


def _loop_grads(
    model: nn.Module,
    batch: _Batch,
    loss_fn: LossFn,
    names: Sequence[str],
    state: dict[str, Tensor],
) -> dict[str, Tensor]:
    """One backward pass per sample: the fallback for models ``vmap`` cannot batch (data-dependent
    control flow such as HuggingFace's attention-mask shortcuts)."""
    rows: dict[str, list[Tensor]] = {n: [] for n in names}
    for i in range(len(batch)):
        leaves = dict(state)
        tracked = [leaves[n].detach().requires_grad_(True) for n in names]
        leaves.update(zip(names, tracked))
        inputs, extras, target = batch.rows(slice(i, i + 1))
        scores = batch.scores(model, leaves, inputs, extras)
        loss = _check_loss(loss_fn(scores, target), 1).sum()
        grads = torch.autograd.grad(loss, tracked, allow_unused=True)
        for n, t, g in zip(names, tracked, grads):
            rows[n].append(torch.zeros_like(t) if g is None else g.detach())
    return {n: torch.stack(r) for n, r in rows.items()}


def _vmap_grads(
    model: nn.Module,
    batch: _Batch,
    loss_fn: LossFn,
    names: Sequence[str],
    state: dict[str, Tensor],
) -> dict[str, Tensor]:
    tracked = {n: state[n] for n in names}
    constants = {n: t for n, t in state.items() if n not in tracked}
    in_dims = (
        None,
        tuple(0 if batch.batched(v) else None for v in batch.inputs),
        tuple(0 if batch.batched(v) else None for v in batch.extras),
        0,
    )

    def one(value: Any, dim: int | None) -> Any:
        return value.unsqueeze(0) if dim is not None else value

    def sample_loss(
        theta: dict[str, Tensor], xs: tuple[Any, ...], es: tuple[Any, ...], target: Tensor
    ) -> Tensor:
        xs = tuple(one(v, d) for v, d in zip(xs, in_dims[1]))
        es = tuple(one(v, d) for v, d in zip(es, in_dims[2]))
        args, kwargs = batch.adapted.arguments(xs, es)
        out = functional_call(model, (theta, constants), args, kwargs, strict=False)
        scores = batch.adapted.read_output(out)
        return _check_loss(loss_fn(scores, target.unsqueeze(0)), 1).sum()

    try:
        return vmap(grad(sample_loss), in_dims=in_dims)(
            tracked, batch.inputs, batch.extras, batch.target
        )
    except RuntimeError as err:
        if not _is_vmap_limit(err):
            raise
        key = type(model).__name__
        if key not in _loop_warned:
            _loop_warned.add(key)
            warnings.warn(
                f"Per-sample gradients: torch.func.vmap cannot batch {key} ({str(err)[:120]}...); "
                "using one backward pass per sample for the parameters outside Linear/Conv2d "
                "layers (same numbers, slower).",
                stacklevel=3,
            )
        return _loop_grads(model, batch, loss_fn, names, state)


def per_sample_grads(
    model: nn.Module,
    batch: Any,
    loss_fn: LossFn,
    parameters: ParameterSpec = None,
    *,
    adapter: BatchAdapter | None = None,
    targets: Targets = "labels",
    values: Mapping[str, Tensor] | None = None,
) -> Tensor:
    r"""Per-sample gradients :math:`\nabla_\theta \ell(\theta, z_i)`, flattened to ``(B, P)``.

    The model is evaluated functionally (``torch.func.functional_call``, ``vmap`` over
    ``grad``; one backward pass per sample where ``vmap`` cannot batch the model) in eval mode;
    its weights, ``requires_grad`` flags, ``.grad`` and train/eval mode are left as they were.
    Buffers (e.g. batch-norm statistics) are constants. Every tensor of the batch with the
    batch dimension (explained inputs, extras such as ``attention_mask``, labels) is split into
    samples; the rest is passed as is. Memory grows with ``B * P``: split large datasets into
    chunks.

    Args:
        model: any ``nn.Module``; the adapter decides how it is called.
        batch: a batch as the dataloader yields it, see the module docstring.
        loss_fn: ``loss_fn(scores, target) -> (B,)`` per-sample loss.
        parameters: parameters to differentiate, see :func:`select_parameters`.
        adapter: how to read the batch and the model's output; default ``BatchAdapter()``.
        targets: ``"labels"`` (target = the adapter's labels) or ``"inputs"`` (target = the
            first explained input).
        values: replacement values (e.g. from a checkpoint) for parameters and buffers, by
            name; names not given use the model's current tensors.

    Returns:
        ``(B, P)``: the gradients of the selected parameters, concatenated in model order.

    Raises:
        ValueError: ``targets='labels'`` on a batch without labels, labels that do not fit the
            scores, or a loss that is not one value per sample.

    Example:
        >>> net = nn.Linear(3, 1, bias=False)
        >>> x, y = torch.ones(2, 3), torch.zeros(2, 1)
        >>> loss = lambda out, t: ((out - t) ** 2).sum(1)
        >>> g = per_sample_grads(net, (x, y), loss)
        >>> torch.allclose(g, 2 * net(x).detach() * x)
        True
    """
    _check_targets(targets)
    names = select_parameters(model, parameters)
    adapted = _split(model, batch, adapter, targets)
    if len(adapted) == 0:
        raise ValueError("`batch` is empty (0 examples); pass at least one example.")
    check_finite_batch(adapted, "batch")
    with eval_mode(model), grad_enabled():
        state = _values(model, values or {})
        prepared = _prepare(model, adapted, targets, state)
        grads = _vmap_grads(model, prepared, loss_fn, names, state)
    out = torch.cat([grads[n].reshape(len(prepared), -1) for n in names], dim=1)
    finite = torch.isfinite(out).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten().tolist()
        source = (
            "the given `values`" if values else f"the current weights of {type(model).__name__}"
        )
        raise NonFiniteError(
            f"Per-sample gradients at {source} are NaN or inf for `batch` rows {rows[:10]} "
            f"({len(rows)} of {len(finite)}): non-finite weights, or a loss that overflows "
            "(e.g. log of 0). Check the weights and `loss_fn`."
        )
    return out


# ------------------------------------------------------------------------ structured gradients
@dataclass
class _GradBlocks:
    """Per-sample gradients of ``B`` samples, partly factored.

    ``parts`` holds materialised gradients ``(B, n)`` by parameter name. Each ``factored`` entry
    ``(name, A, D)`` is a ``Linear`` weight whose per-sample gradient is the outer product
    ``D[i] A[i]^T``: dot products and norms follow from ``A`` and ``D`` without forming it.
    """

    parts: list[tuple[str, Tensor]]
    factored: list[tuple[str, Tensor, Tensor]]
    _dense: Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.parts[0][1]) if self.parts else len(self.factored[0][1])

    def dense(self) -> Tensor:
        """The materialised parts side by side, ``(B, sum n)`` (computed once)."""
        if self._dense is None:
            if self.parts:
                self._dense = torch.cat([t for _, t in self.parts], dim=1)
            else:
                a = self.factored[0][1]
                self._dense = a.new_zeros(len(a), 0)
        return self._dense

    def scale(
        self, columns: Mapping[str, float] | None = None, rows: Tensor | None = None
    ) -> _GradBlocks:
        """Multiply parameter ``name``'s gradients by ``columns[name]`` and sample ``i`` by ``rows[i]``."""
        parts, factored = list(self.parts), list(self.factored)
        if columns is not None:
            parts = [(n, t * float(columns[n])) for n, t in parts]
            factored = [(n, a, d * float(columns[n])) for n, a, d in factored]
        if rows is not None:
            parts = [(n, t * rows[:, None]) for n, t in parts]
            factored = [(n, a, d * rows[:, None]) for n, a, d in factored]
        return _GradBlocks(parts, factored)

    def sq_norms(self) -> Tensor:
        """``(B,)`` squared norms of the full per-sample gradients."""
        total = None
        for _, t in self.parts:
            total = _add(total, torch.linalg.vecdot(t, t))
        for _, a, d in self.factored:
            total = _add(total, torch.linalg.vecdot(a, a) * torch.linalg.vecdot(d, d))
        return cast(Tensor, total)

    def dot(self, other: _GradBlocks) -> Tensor:
        """``(B, B_other)`` dot products with the per-sample gradients of ``other``."""
        out = self.dense() @ other.dense().T
        for (_, a, d), (_, a2, d2) in zip(self.factored, other.factored):
            out = out + (a @ a2.T) * (d @ d2.T)
        return out

    def finite_rows(self) -> Tensor:
        """``(B,)`` whether every gradient value of each sample is finite."""
        ok = torch.ones(len(self), dtype=torch.bool)
        for _, t in self.parts:
            ok &= torch.isfinite(t).reshape(len(t), -1).all(dim=1).cpu()
        for _, a, d in self.factored:
            ok &= torch.isfinite(a).reshape(len(a), -1).all(dim=1).cpu()
            ok &= torch.isfinite(d).reshape(len(d), -1).all(dim=1).cpu()
        return ok

    def flatten(self, names: Sequence[str]) -> Tensor:
        """Materialise ``(B, P)`` in the order of ``names``."""
        parts = dict(self.parts)
        for n, a, d in self.factored:
            parts[n] = (d[:, :, None] * a[:, None, :]).reshape(len(a), -1)
        return torch.cat([parts[n] for n in names], dim=1)


def _add(total: Tensor | None, value: Tensor) -> Tensor:
    return value if total is None else total + value


def _fast_modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """``Linear``/``Conv2d`` modules whose weight is tracked and whose parameters are not shared."""
    owners: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    tracked = set(names)
    found = {}
    for prefix, module in model.named_modules():
        if type(module) is nn.Conv2d:
            if (
                module.groups != 1
                or module.padding_mode != "zeros"
                or isinstance(module.padding, str)
            ):
                continue
        elif type(module) is not nn.Linear:
            continue
        if f"{prefix}.weight" in tracked and all(
            owners[id(p)] == 1 for p in module.parameters(recurse=False)
        ):
            found[prefix] = module
    return found


def _conv2d_sample_grads(module: nn.Conv2d, a: Tensor, d: Tensor) -> Tensor:
    """Per-sample ``Conv2d`` weight gradients: the weight gradient of a convolution whose
    groups are the samples (one batched backend call, no im2col)."""
    b, o = d.shape[:2]
    shape = (b * o, *module.weight.shape[1:])
    stand_in = module.weight.new_empty(shape)  # only its sizes are read
    _, grads, _ = torch.ops.aten.convolution_backward(
        d.reshape(1, b * o, *d.shape[2:]),
        a.reshape(1, -1, *a.shape[2:]),
        stand_in,
        None,
        list(module.stride),
        list(module.padding),
        list(module.dilation),
        False,
        [0, 0],
        b,
        [False, True, False],
    )
    return grads.reshape(b, o, -1)


def _layer_blocks(
    model: nn.Module,
    modules: dict[str, nn.Module],
    batch: _Batch,
    loss_fn: LossFn,
    state: dict[str, Tensor],
    names: set[str],
) -> tuple[dict[str, Tensor], list[tuple[str, Tensor, Tensor]]]:
    """Per-sample ``Linear``/``Conv2d`` gradients from layer inputs and output gradients."""
    calls: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name in modules}

    def recorder(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            calls[name].append((inputs[0].detach(), output))

        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in modules.items()]
    try:
        # parameters as leaves that require grad, so every layer output is part of the graph
        params = {n for n, _ in model.named_parameters()}
        leaves = {
            n: t.detach().requires_grad_(n in params and t.is_floating_point())
            for n, t in state.items()
        }
        scores = batch.scores(model, leaves, batch.inputs, batch.extras)
    finally:
        for h in handles:
            h.remove()
    b = len(batch)
    loss = _check_loss(loss_fn(scores, batch.target), b)
    outputs = [o for name in modules for _, o in calls[name]]
    deltas = iter(torch.autograd.grad(loss.sum(), outputs, allow_unused=True))
    dense: dict[str, Tensor] = {}
    factored = []
    for name, module in modules.items():
        weight = bias = None
        for a, o in calls[name]:
            d = next(deltas)
            d = torch.zeros_like(o) if d is None else d.detach()
            if isinstance(module, nn.Conv2d):
                g, gb = _conv2d_sample_grads(module, a, d), d.sum((2, 3))
            elif a.dim() == 2 and len(calls[name]) == 1:
                factored.append((f"{name}.weight", a, d))
                g, gb = None, d
            else:
                a, d = a.reshape(b, -1, a.shape[-1]), d.reshape(b, -1, d.shape[-1])
                g, gb = torch.einsum("bto,bti->boi", d, a), d.sum(1)
            weight = g if weight is None else weight + g
            bias = gb if bias is None else bias + gb
        if weight is not None:
            dense[f"{name}.weight"] = weight.reshape(b, -1)
        if bias is not None and f"{name}.bias" in names:
            dense[f"{name}.bias"] = bias
    return dense, factored


def _grad_blocks(
    model: nn.Module,
    batch: Any,
    loss_fn: LossFn,
    names: Sequence[str],
    *,
    targets: str,
    values: Mapping[str, Tensor],
    adapter: BatchAdapter | None = None,
    fast: bool = True,
) -> _GradBlocks:
    """Per-sample gradients of ``names`` as :class:`_GradBlocks`.

    With ``fast``, tracked ``Linear``/``Conv2d`` layers get their gradients from one batched
    backward pass (layer inputs times output gradients; a ``Linear`` weight on 2-D inputs stays
    factored), and every other tracked parameter from ``torch.func``. The model is called as
    the adapter says, whatever its signature.
    """
    adapted = _split(model, batch, adapter, targets)
    modules = _fast_modules(model, names) if fast else {}
    covered = {f"{m}.{p}" for m in modules for p in ("weight", "bias")}
    rest = [n for n in names if n not in covered]
    with eval_mode(model), grad_enabled():
        state = _values(model, values)
        prepared = _prepare(model, adapted, targets, state)
        dense = _vmap_grads(model, prepared, loss_fn, rest, state) if rest else {}
        factored: list[tuple[str, Tensor, Tensor]] = []
        if modules:
            layer_dense, factored = _layer_blocks(
                model, modules, prepared, loss_fn, state, set(names)
            )
            dense.update(layer_dense)
    parts = [(n, dense[n].reshape(len(prepared), -1)) for n in names if n in dense]
    return _GradBlocks(parts, factored)
