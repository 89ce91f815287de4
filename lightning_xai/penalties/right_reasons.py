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
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_xai.penalties.masks import check_mask
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "RightReasonsResult",
    "check_sample_independence",
    "log_prob_input_gradients",
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
        input_gradients: :math:`g`, the inputs' shape.
        logits: the model's output on the inputs.
        log_probs: ``log_softmax(logits)`` in float32 or wider; reuse it for the
            cross-entropy (``F.nll_loss(result.log_probs, y)``) to save a second softmax.
    """

    penalty: Tensor
    per_sample: Tensor
    input_gradients: Tensor
    logits: Tensor
    log_probs: Tensor


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")


def _check_inputs(inputs: Tensor) -> None:
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        got = inputs.dtype if isinstance(inputs, Tensor) else type(inputs).__name__
        raise TypeError(
            f"`inputs` must be a floating-point tensor to take input gradients, got {got}; "
            "convert them with `x.float()`."
        )
    if inputs.dim() < 2:
        raise ValueError(
            f"`inputs` must be a batch of shape (N, ...) with at least 2 dimensions, got "
            f"{tuple(inputs.shape)}; add the batch dimension with `x.unsqueeze(0)`."
        )


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


def _log_probs(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(x)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"The model must return logits of shape (N, num_classes) = ({x.shape[0]}, K), got {got}; "
            "wrap it so that `forward` returns one row of logits per input."
        )
    # Half-precision logits (autocast) are upcast: the penalty squares small differences.
    wide = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    return F.log_softmax(wide, dim=-1), logits


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


def log_prob_input_gradients(
    model: nn.Module,
    inputs: Tensor,
    *,
    method: GradientMethod = "auto",
    create_graph: bool = True,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Input gradients :math:`\partial/\partial x_n \sum_k \log p(k \mid x_n)` and the logits.

    Works under ``torch.no_grad`` and ``torch.inference_mode`` too (see
    :func:`~lightning_xai.utilities.grad_enabled`).

    Args:
        model: classifier returning logits of shape ``(N, K)``.
        inputs: floating-point batch ``(N, ...)``.
        method: ``"batch_sum"``: one ``autograd.grad`` of the batch sum (exact when samples
            are independent). ``"per_sample"``: exact per-sample gradients, one backward per
            sample vectorised with ``torch.func.vmap`` (costs about ``N`` times more).
            ``"auto"``: ``"batch_sum"``, with a warning (once per model) when
            :func:`sample_coupling_modules` finds layers that mix samples.
        create_graph: keep the gradient differentiable (needed to train on a penalty of it).
        chunk_size: samples per vectorised backward for ``"per_sample"`` (bounds memory);
            ``None`` does all at once.

    Returns:
        ``(input_gradients, logits)``; the gradients have the inputs' shape and dtype.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> g, logits = log_prob_input_gradients(model, torch.randn(4, 3))
        >>> g.shape, logits.shape
        (torch.Size([4, 3]), torch.Size([4, 2]))
    """
    grads, logits, _ = _input_gradients(model, inputs, method, create_graph, chunk_size)
    return grads, logits


def _input_gradients(
    model: nn.Module,
    inputs: Tensor,
    method: GradientMethod,
    create_graph: bool,
    chunk_size: int | None,
) -> tuple[Tensor, Tensor, Tensor]:
    _check_choice("method", method, get_args(GradientMethod))
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    _check_inputs(inputs)
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
    with grad_enabled(inputs) as (x,):
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        log_probs, logits = _log_probs(model, x)
        sums = log_probs.sum(dim=-1)
        if method == "batch_sum":
            (grads,) = torch.autograd.grad(
                sums.sum(), x, retain_graph=True, create_graph=create_graph
            )
        else:

            def one_sample(selector: Tensor) -> Tensor:
                return torch.autograd.grad(
                    sums, x, selector, retain_graph=True, create_graph=create_graph
                )[0]

            n = x.shape[0]
            selectors = torch.eye(n, dtype=sums.dtype, device=sums.device)
            rows = torch.func.vmap(one_sample, chunk_size=chunk_size)(selectors)
            index = torch.arange(n, device=x.device)
            grads = rows[index, index]
    return grads, logits, log_probs


def right_reasons_penalty(
    model: nn.Module,
    inputs: Tensor,
    mask: Tensor,
    *,
    reduction: Reduction = "mean",
    method: GradientMethod = "auto",
    create_graph: bool = True,
    chunk_size: int | None = None,
) -> RightReasonsResult:
    r"""The right-reasons penalty :math:`\sum_d (A_{nd}\, g_{nd})^2` per sample, reduced.

    Add ``weight * result.penalty`` to the cross-entropy of ``result.logits``. With
    ``reduction="mean"`` (the default, matching ``F.cross_entropy``), ``cross_entropy +
    weight * penalty`` is the summed objective of the formula divided by the batch size, so the
    weight keeps its meaning across batch sizes, gradient accumulation and DDP; use
    ``reduction="sum"`` with a summed cross-entropy for the literal sum over samples.

    Args:
        model: classifier returning logits ``(N, K)``.
        inputs: floating-point batch ``(N, ...)``.
        mask: annotations, ``bool`` or floating point, the inputs' shape (or broadcastable to
            it); 1/``True`` marks features the model must not rely on.
        reduction: ``"mean"`` or ``"sum"`` over samples.
        method: how the input gradients are taken, see :func:`log_prob_input_gradients`.
        create_graph: keep the penalty differentiable in the parameters (``True`` to train).
        chunk_size: see :func:`log_prob_input_gradients`.

    Returns:
        A :class:`RightReasonsResult`.

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
    """
    _check_choice("reduction", reduction, get_args(Reduction))
    weights = check_mask(mask, inputs)
    grads, logits, log_probs = _input_gradients(model, inputs, method, create_graph, chunk_size)
    with grad_enabled(weights) as (weights,):
        if weights.dtype == torch.bool:  # A^2 = A: saves no float copy of the mask for backward
            per_sample = (grads.square() * weights).flatten(1).sum(dim=1)
        else:
            per_sample = (weights * grads).square().flatten(1).sum(dim=1)
        penalty = per_sample.mean() if reduction == "mean" else per_sample.sum()
    return RightReasonsResult(penalty, per_sample, grads, logits, log_probs)
