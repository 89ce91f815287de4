r"""The "right for the right reasons" input-gradient penalty.

For inputs :math:`x_n`, annotation masks :math:`A_n` (1 = the model must not rely on this
feature) and a classifier with class probabilities :math:`p(k \mid x_n)`:

.. math::

    g_{nd} = \frac{\partial}{\partial x_{nd}} \sum_k \log p(k \mid x_n), \qquad
    R_n = \sum_d \left(A_{nd}\, g_{nd}\right)^2, \qquad
    \text{penalty} = \sum_n R_n \;\text{(or its mean over } n\text{)}.

The gradient is taken with ``create_graph=True``, so the penalty is differentiable in the
model's parameters and training reduces it. Without ``create_graph`` the penalty is a constant
for the optimizer and silently does nothing.

When samples are independent (no layer mixes samples of a batch), one ``autograd.grad`` of the
batch sum gives every :math:`g_n` at once, because the log-probabilities of sample :math:`m`
do not depend on :math:`x_n` for :math:`m \ne n`. Layers such as ``BatchNorm`` in training
mode couple the samples; then the batch-sum gradient contains cross-sample terms and the exact
per-sample gradients need one backward pass per sample, which ``method="per_sample"`` runs
vectorised with ``torch.func.vmap``.

Token ids (integers) have no gradient. With ``layer=`` (normally the embedding, a module path
such as ``"embedding"`` or the module itself) the gradient is taken with respect to that layer's
output :math:`e_n` instead, :math:`g_{ntd} = \partial/\partial e_{ntd} \sum_k \log p(k \mid x_n)`,
and a mask with one value per token, ``(N, T)``, is broadcast over the embedding dimension.

Batches are read by a :class:`~lightning_xai.utilities.BatchAdapter`: a tensor, an ``(x, y, ...)``
tuple or a dict batch (``input_ids``, ``attention_mask``, ``labels``) are all accepted, the other
forward arguments (an attention mask, a second input) are passed along, and class scores are
read from a tensor, a tuple or a ``ModelOutput``. With several explained inputs the mask is a
tuple with one mask per input (``None`` for an input that is not penalised).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_xai.penalties.masks import check_mask
from lightning_xai.utilities.batches import AdaptedBatch, BatchAdapter
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "RightReasonsResult",
    "check_sample_independence",
    "log_prob_input_gradients",
    "resolve_layer",
    "right_reasons_penalty",
    "sample_coupling_modules",
]

GradientMethod = Literal["auto", "batch_sum", "per_sample"]
Reduction = Literal["mean", "sum"]

_WARNED: weakref.WeakSet[nn.Module] = weakref.WeakSet()
# Batch-norm layers per model, found once (walking a large model every step would cost time).
_BATCH_NORMS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[str, nn.Module], ...]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class RightReasonsResult:
    """What :func:`right_reasons_penalty` computed.

    Attributes:
        penalty: the reduced penalty (scalar), differentiable in the parameters when
            ``create_graph=True``; multiply it by the penalty weight and add it to the loss.
        per_sample: :math:`R_n`, shape ``(N,)``.
        input_gradients: :math:`g`, the inputs' shape; with ``layer=`` the layer output's shape
            (``(N, T, E)`` for an embedding); a tuple for several explained inputs.
        logits: the model's class scores on the inputs.
        log_probs: ``log_softmax(logits)`` in float32 or wider; reuse it for the
            cross-entropy (``F.nll_loss(result.log_probs, y)``) to save a second softmax.
        mask: the mask as applied, broadcastable to ``input_gradients`` (a per-token ``(N, T)``
            mask becomes ``(N, T, 1)``); a tuple for several inputs. Feed it with
            ``input_gradients`` to :class:`~lightning_xai.metrics.RightReasonsScore`.
    """

    penalty: Tensor
    per_sample: Tensor
    input_gradients: Tensor | tuple[Tensor, ...]
    logits: Tensor
    log_probs: Tensor
    mask: Tensor | tuple[Tensor | None, ...] | None = None


LayerLike = str | nn.Module | None
MaskLike = Tensor | Sequence[Tensor | None]


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")


def _embedding_paths(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Embedding)]


def _check_inputs(model: nn.Module, inputs: tuple[Tensor, ...], single: bool) -> None:
    for i, x in enumerate(inputs):
        which = "`inputs`" if single else f"Explained input {i}"
        if not x.is_floating_point():
            found = _embedding_paths(model)
            layers = (
                f"the model's nn.Embedding modules are {found}, e.g. layer={found[0]!r}"
                if found
                else "the model has no nn.Embedding, so name the module whose output to penalise"
            )
            raise TypeError(
                f"{which} hold {x.dtype} values, but input gradients need floating-point "
                f"inputs. For token ids pass `layer=`, the layer whose output is penalised "
                f"({layers}); for other numbers convert them with `x.float()`."
            )
        if x.dim() < 2:
            raise ValueError(
                f"{which} must be a batch of shape (N, ...) with at least 2 dimensions, got "
                f"{tuple(x.shape)}; add the batch dimension with `x.unsqueeze(0)`."
            )


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The submodule of ``model`` that ``layer`` names (a module path) or is (a module).

    A path may leave out the name of the one direct child that holds it, so ``"embedding"``
    also finds ``model.model.embedding`` inside a LightningModule that keeps its network in
    ``self.model``.

    Raises:
        ValueError: naming ``layer`` and the model's ``nn.Embedding`` modules (or its top-level
            modules) when the path is not found or the module is not part of ``model``.

    Example:
        >>> net = nn.Sequential(nn.Embedding(10, 4), nn.Flatten())
        >>> resolve_layer(net, "0")
        Embedding(10, 4)
        >>> resolve_layer(nn.ModuleDict({"model": net}), "0")
        Embedding(10, 4)
    """
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(
                f"`layer` is a {type(layer).__name__} that is not part of the model; pass a "
                "submodule of the model (or its module path, e.g. layer='embedding')."
            )
        return layer
    if not isinstance(layer, str) or not layer:
        raise TypeError(
            f"`layer` must be a module path such as 'embedding' or an nn.Module, got {layer!r}."
        )
    try:
        return model.get_submodule(layer)
    except AttributeError:
        pass
    found = []
    for child_name, child in model.named_children():
        try:
            found.append((f"{child_name}.{layer}", child.get_submodule(layer)))
        except AttributeError:
            continue
    if len(found) == 1:
        return found[0][1]
    embeddings = _embedding_paths(model)
    hint = (
        f"its nn.Embedding modules are {embeddings}"
        if embeddings
        else f"its modules include {[n for n, _ in model.named_modules() if n][:12]}"
    )
    if found:
        raise ValueError(
            f"`layer={layer!r}` is ambiguous in the model: {[p for p, _ in found]}; give the "
            "full path."
        )
    raise ValueError(f"`layer={layer!r}` is not a module path of the model; {hint}.")


@contextmanager
def _capture(layer: nn.Module, name: str) -> Iterator[list[Tensor]]:
    """Keep the output of ``layer`` during a forward (made to require grad if it does not)."""
    outputs: list[Tensor] = []

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if not isinstance(output, Tensor) or not output.is_floating_point():
            got = output.dtype if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(
                f"`layer={name}` returned {got}; the penalty needs a layer whose output is one "
                "floating-point tensor (the embedding layer for token ids)."
            )
        if not output.requires_grad:  # a frozen layer: differentiate at its output anyway
            output = output.detach().requires_grad_(True)
        outputs.append(output)
        return output

    handle = layer.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def sample_coupling_modules(model: nn.Module) -> list[str]:
    """Names of submodules whose output for one sample depends on other samples of the batch.

    These are batch-norm layers that normalise with batch statistics: in training mode, or
    with ``track_running_stats=False``. Other layers (``LayerNorm``, ``GroupNorm``,
    ``InstanceNorm``, dropout, convolutions) act per sample. The batch-norm layers of a model
    are looked up once and remembered; their current mode is checked on every call.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        >>> sample_coupling_modules(net)
        ['1']
        >>> sample_coupling_modules(net.eval())
        []
    """
    norms = _BATCH_NORMS.get(model)
    if norms is None:
        norms = tuple(
            (name or type(module).__name__, module)
            for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
        )
        _BATCH_NORMS[model] = norms
    return [name for name, module in norms if module.training or not module.track_running_stats]


def _read_log_probs(logits: Any, n: int) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != n:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"The model must return logits of shape (N, num_classes) = ({n}, K), got {got}; "
            "wrap it so that `forward` returns one row of logits per input, or say where the "
            "scores are with BatchAdapter(output=...)."
        )
    # Half-precision logits (autocast) are upcast: the penalty squares small differences.
    wide = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    return F.log_softmax(wide, dim=-1), logits


def _log_probs(model: Callable[[Tensor], Any], x: Tensor) -> tuple[Tensor, Tensor]:
    return _read_log_probs(model(x), x.shape[0])


def check_sample_independence(model: nn.Module, inputs: Tensor, rtol: float = 1e-6) -> bool:
    """Check numerically that the model treats the samples of a batch independently.

    Differentiates the first sample's :math:`\\sum_k \\log p(k \\mid x_0)` with respect to the
    whole batch; for independent samples the gradient on the other samples is zero. Buffers
    (batch-norm running statistics) are copied, so the model is left unchanged.

    Args:
        model: the classifier, in the mode it will be used in.
        inputs: a batch of at least two inputs.
        rtol: allowed cross-sample gradient, relative to the first sample's own gradient.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
        >>> x = torch.randn(5, 4)
        >>> check_sample_independence(net, x), check_sample_independence(net.eval(), x)
        (False, True)
    """
    if not isinstance(inputs, Tensor) or inputs.dim() < 1 or inputs.shape[0] < 2:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"`inputs` must be a batch of at least 2 samples, got {got}.")
    state = dict(model.named_parameters())
    state.update({name: buffer.clone() for name, buffer in model.named_buffers()})
    with grad_enabled(inputs) as (x,):
        x = x.detach().requires_grad_(True)
        log_probs, _ = _log_probs(lambda t: torch.func.functional_call(model, state, (t,)), x)
        (grad,) = torch.autograd.grad(log_probs[0].sum(), x)
    own = grad[0].abs().max()
    leak = grad[1:].abs().max()
    return bool(leak <= rtol * own)


def _split(model: nn.Module, inputs: Any, adapter: BatchAdapter | None) -> AdaptedBatch:
    if isinstance(inputs, AdaptedBatch):
        return inputs
    if adapter is not None and not isinstance(adapter, BatchAdapter):
        raise TypeError(
            f"`adapter` must be a lightning_xai.utilities.BatchAdapter, got "
            f"{type(adapter).__name__}; e.g. adapter=BatchAdapter(inputs='input_ids')."
        )
    if isinstance(inputs, Tensor) and adapter is None:
        return BatchAdapter(labels=None).split(inputs)
    return (adapter or BatchAdapter()).split(inputs, model)


def log_prob_input_gradients(
    model: nn.Module,
    inputs: Any,
    *,
    method: GradientMethod = "auto",
    create_graph: bool = True,
    chunk_size: int | None = None,
    layer: LayerLike = None,
    adapter: BatchAdapter | None = None,
) -> tuple[Tensor | tuple[Tensor, ...], Tensor]:
    r"""Input gradients :math:`\partial/\partial x_n \sum_k \log p(k \mid x_n)` and the logits.

    Works under ``torch.no_grad`` and ``torch.inference_mode`` too (see
    :func:`~lightning_xai.utilities.grad_enabled`).

    Args:
        model: classifier returning logits of shape ``(N, K)`` (or an output the adapter reads
            them from).
        inputs: floating-point batch ``(N, ...)``; or any batch (a tuple, a dict of
            ``input_ids``/``attention_mask``/...) or an
            :class:`~lightning_xai.utilities.AdaptedBatch`, split by ``adapter``.
        method: ``"batch_sum"``: one ``autograd.grad`` of the batch sum (exact when samples
            are independent). ``"per_sample"``: exact per-sample gradients, one backward per
            sample vectorised with ``torch.func.vmap`` (costs about ``N`` times more).
            ``"auto"``: ``"batch_sum"``, with a warning (once per model) when
            :func:`sample_coupling_modules` finds layers that mix samples.
        create_graph: keep the gradient differentiable (needed to train on a penalty of it).
        chunk_size: samples per vectorised backward for ``"per_sample"`` (bounds memory);
            ``None`` does all at once.
        layer: differentiate with respect to this layer's output instead of the inputs (a module
            path such as ``"embedding"``, or the module); needed for token ids.
        adapter: how to read the batch and call the model; ``None``: a tensor is the input, other
            batches are read by ``BatchAdapter()``.

    Returns:
        ``(input_gradients, logits)``; the gradients have the inputs' (or the layer output's)
        shape and dtype, a tuple for several explained inputs.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> g, logits = log_prob_input_gradients(model, torch.randn(4, 3))
        >>> g.shape, logits.shape
        (torch.Size([4, 3]), torch.Size([4, 2]))
    """
    grads, logits, _, batch = _input_gradients(
        model, inputs, method, create_graph, chunk_size, layer, adapter
    )
    return (grads[0] if _single(batch, layer) else grads), logits


def _single(batch: AdaptedBatch, layer: LayerLike) -> bool:
    return layer is not None or batch.single


def _input_gradients(
    model: nn.Module,
    inputs: Any,
    method: GradientMethod,
    create_graph: bool,
    chunk_size: int | None,
    layer: LayerLike = None,
    adapter: BatchAdapter | None = None,
) -> tuple[tuple[Tensor, ...], Tensor, Tensor, AdaptedBatch]:
    _check_choice("method", method, get_args(GradientMethod))
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    batch = _split(model, inputs, adapter)
    target = resolve_layer(model, layer) if layer is not None else None
    if target is None:
        _check_inputs(model, batch.inputs, batch.single)
    if method == "auto":
        coupled = [] if model in _WARNED else sample_coupling_modules(model)
        if coupled:
            _WARNED.add(model)
            import warnings

            warnings.warn(
                f"Modules {coupled} mix the samples of a batch (batch statistics), so the fast "
                "batch-sum input gradient includes cross-sample terms. Pass "
                "`method='per_sample'` for exact per-sample gradients (about N times the "
                "backward cost), `method='batch_sum'` to accept the approximation silently, or "
                "put those modules in eval mode.",
                UserWarning,
                stacklevel=3,
            )
        method = "batch_sum"
    n = len(batch)
    with grad_enabled(batch.inputs, batch.extras) as (xs, extras):
        if target is None:
            xs = tuple(x if x.requires_grad else x.detach().requires_grad_(True) for x in xs)
            log_probs, logits = _read_log_probs(batch.call(model, xs, extras), n)
            targets: tuple[Tensor, ...] = xs
        else:
            name = repr(layer) if isinstance(layer, str) else type(layer).__name__
            with _capture(target, name) as captured:
                out = batch.call(model, xs, extras)
            if len(captured) != 1:
                raise ValueError(
                    f"`layer={name}` ran {len(captured)} times in one forward; the penalty "
                    "needs a layer that runs exactly once (e.g. the word embedding)."
                )
            log_probs, logits = _read_log_probs(out, n)
            targets = (captured[0],)
        sums = log_probs.sum(dim=-1)
        if method == "batch_sum":
            grads = torch.autograd.grad(
                sums.sum(), targets, retain_graph=True, create_graph=create_graph
            )
        else:

            def one_sample(selector: Tensor) -> tuple[Tensor, ...]:
                return torch.autograd.grad(
                    sums, targets, selector, retain_graph=True, create_graph=create_graph
                )

            selectors = torch.eye(n, dtype=sums.dtype, device=sums.device)
            rows = torch.func.vmap(one_sample, chunk_size=chunk_size)(selectors)
            index = torch.arange(n, device=sums.device)
            grads = tuple(r[index, index] for r in rows)
    return tuple(grads), logits, log_probs, batch


def _layer_mask(mask: Any, output: Tensor, inputs: Tensor, layer: LayerLike) -> Tensor:
    """A mask for a layer's output: its shape (or broadcastable to it), or one value per input
    position (e.g. ``(N, T)`` for ``(N, T, E)`` embeddings), broadcast over the rest."""
    name = repr(layer) if isinstance(layer, str) else type(layer).__name__
    if isinstance(mask, Tensor) and mask.dim() < output.dim():
        if tuple(mask.shape) == tuple(output.shape[: mask.dim()]):
            mask = mask.reshape(*mask.shape, *([1] * (output.dim() - mask.dim())))
    try:
        return check_mask(mask, output)
    except ValueError:
        raise ValueError(
            f"`mask` has shape {tuple(mask.shape)}, which fits neither the inputs "
            f"{tuple(inputs.shape)} nor the output of `layer={name}` {tuple(output.shape)}; give "
            f"one value per token {tuple(output.shape[:2])} (broadcast over the embedding "
            "dimension) or one per layer-output element."
        ) from None


def right_reasons_penalty(
    model: nn.Module,
    inputs: Any,
    mask: MaskLike,
    *,
    reduction: Reduction = "mean",
    method: GradientMethod = "auto",
    create_graph: bool = True,
    chunk_size: int | None = None,
    layer: LayerLike = None,
    adapter: BatchAdapter | None = None,
) -> RightReasonsResult:
    r"""The right-reasons penalty :math:`\sum_d (A_{nd}\, g_{nd})^2` per sample, reduced.

    Add ``weight * result.penalty`` to the cross-entropy of ``result.logits``. With
    ``reduction="mean"`` (the default, matching ``F.cross_entropy``), ``cross_entropy +
    weight * penalty`` is the summed objective of the formula divided by the batch size, so the
    weight keeps its meaning across batch sizes, gradient accumulation and DDP; use
    ``reduction="sum"`` with a summed cross-entropy for the literal sum over samples.

    Args:
        model: classifier returning logits ``(N, K)`` (or an output the adapter reads them
            from, such as a HuggingFace ``ModelOutput``).
        inputs: floating-point batch ``(N, ...)``; or any batch (a tuple, a dict of
            ``input_ids``/``attention_mask``/...) or an
            :class:`~lightning_xai.utilities.AdaptedBatch`, split by ``adapter``.
        mask: annotations, ``bool`` or floating point, the inputs' shape (or broadcastable to
            it); 1/``True`` marks features the model must not rely on. With ``layer=``: the
            layer output's shape, or one value per token ``(N, T)``. With several explained
            inputs: a tuple of masks, ``None`` for an input without annotations.
        reduction: ``"mean"`` or ``"sum"`` over samples.
        method: how the input gradients are taken, see :func:`log_prob_input_gradients`.
        create_graph: keep the penalty differentiable in the parameters (``True`` to train).
        chunk_size: see :func:`log_prob_input_gradients`.
        layer: penalise the gradient with respect to this layer's output (a module path such as
            ``"embedding"``, or the module): needed for token ids, which have no gradient.
        adapter: how to read the batch and call the model (see
            :class:`~lightning_xai.utilities.BatchAdapter`); ``None``: a tensor is the input,
            other batches are read by ``BatchAdapter()``.

    Returns:
        A :class:`RightReasonsResult`.

    Raises:
        TypeError: integer inputs without ``layer`` (naming the model's ``nn.Embedding``
            modules), or a mask of the wrong type.
        ValueError: a mask whose shape fits neither the inputs nor the layer output.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        >>> x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
        >>> mask = torch.zeros(6, 4, dtype=torch.bool)
        >>> mask[:, 0] = True  # feature 0 must not matter
        >>> out = right_reasons_penalty(model, x, mask)
        >>> loss = F.cross_entropy(out.logits, y) + 10.0 * out.penalty
        >>> loss.backward()
        >>> bool(out.penalty > 0), out.input_gradients.shape
        (True, torch.Size([6, 4]))

        Token ids: the gradient at the embedding's output, one mask value per token.

        >>> text = nn.Sequential(nn.Embedding(20, 4), nn.Flatten(), nn.Linear(12, 2))
        >>> ids = torch.randint(0, 20, (5, 3))
        >>> out = right_reasons_penalty(text, ids, ids == 7, layer="0")
        >>> out.input_gradients.shape, out.mask.shape
        (torch.Size([5, 3, 4]), torch.Size([5, 3, 1]))
    """
    _check_choice("reduction", reduction, get_args(Reduction))
    batch = _split(model, inputs, adapter)
    single = batch.single
    masks: tuple[Any, ...]
    if layer is not None or single:
        masks = (mask,)
    else:
        if not isinstance(mask, (tuple, list)) or len(mask) != len(batch.inputs):
            got = (
                f"{type(mask).__name__} of {len(mask)}"
                if isinstance(mask, (tuple, list))
                else (type(mask).__name__)
            )
            raise TypeError(
                f"`mask` must be a tuple of {len(batch.inputs)} masks, one per explained input "
                f"(None for an input without annotations), got a {got}."
            )
        masks = tuple(mask)
    if layer is None:  # fail before the forward
        _check_inputs(model, batch.inputs, single)
        weights = tuple(
            None if m is None else check_mask(m, x, name="mask" if single else f"mask[{i}]")
            for i, (m, x) in enumerate(zip(masks, batch.inputs))
        )
    elif not isinstance(mask, Tensor):
        raise TypeError(
            f"`mask` must be a torch.Tensor, got {type(mask).__name__}; build it with "
            "`torch.as_tensor(...)`."
        )
    grads, logits, log_probs, batch = _input_gradients(
        model, batch, method, create_graph, chunk_size, layer, adapter
    )
    if layer is not None:
        weights = (_layer_mask(mask, grads[0], batch.inputs[0], layer),)
    with grad_enabled(*weights) as weights:
        per_sample = torch.zeros((), dtype=grads[0].dtype, device=grads[0].device)
        for g, w in zip(grads, weights):
            if w is None:
                continue
            if w.dtype == torch.bool:  # A^2 = A: saves no float copy of the mask for backward
                per_sample = per_sample + (g.square() * w).flatten(1).sum(dim=1)
            else:
                per_sample = per_sample + (w * g).square().flatten(1).sum(dim=1)
        per_sample = per_sample.expand(len(batch)) if per_sample.dim() == 0 else per_sample
        penalty = per_sample.mean() if reduction == "mean" else per_sample.sum()
    one = _single(batch, layer)
    return RightReasonsResult(
        penalty,
        per_sample,
        grads[0] if one else grads,
        logits,
        log_probs,
        weights[0] if one else tuple(weights),
    )
