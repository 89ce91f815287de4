r"""Model parameter randomisation test (Adebayo et al. 2018): do explanations depend on weights?

Layers (modules with their own parameters and a ``reset_parameters()``) are re-initialised one
at a time in a *copy* of the model (the user's model is never touched):

* ``layer_order="top_down"`` (cascading): from the output layer down, each randomisation kept,
  so entry ``l`` has the top ``l + 1`` layers random;
* ``"bottom_up"``: the same from the input layer up;
* ``"independent"``: one layer at a time, the others left trained.

Every layer is re-initialised by its own ``reset_parameters()`` under torch's global generator
seeded with ``seed`` (forked, so the caller's random state is unchanged); this equals Quantus
0.6.0's ``MPRT(seed=seed - 1)``. After each randomisation the explanation of the same inputs is
compared with the original one, per sample, by

* ``spearman``: Spearman rank correlation of :math:`|a|` over all features;
* ``spearman_support``: the same over the input's support only (features whose input is
  nonzero, or ``support``). With a zero baseline, integrated gradients and input x gradient
  are exactly 0 off the support for *any* model, and those shared ties inflate ``spearman``;
* ``ssim``: the structural similarity of :math:`|a| / \max |a|` (uniform 7x7 window, shrunk to
  the input, sample covariance, data range 1), averaged over channels.

**Score direction**: *lower is better* for all three (an explanation that depends on the model
changes when it is randomised). Constant rows score 0 for the correlations. The per-layer
scores hold only randomised entries: there is no original-vs-original entry to inflate an
average.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_xai.metrics.functional._quality import check_target, spearman
from lightning_xai.utilities.gradients import grad_enabled

__all__ = ["RandomisationResult", "parameter_randomisation", "randomisable_layers", "ssim"]

ModelExplainFunc = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``explain_fn(model, inputs, target) -> attributions``."""

LayerOrder = Literal["top_down", "bottom_up", "independent"]
SIMILARITIES = ("spearman", "spearman_support", "ssim")


@dataclass(frozen=True)
class RandomisationResult:
    """Similarity of explanations before and after each randomisation step.

    Attributes:
        layers: names of the randomised layers, in the order they were randomised.
        spearman: ``(layers, n)`` Spearman correlation of ``|a|`` over all features.
        spearman_support: ``(layers, n)`` the same over the input's support.
        ssim: ``(layers, n)`` structural similarity of the max-normalised ``|a|``.
    """

    layers: list[str]
    spearman: Tensor
    spearman_support: Tensor
    ssim: Tensor

    def as_dict(self) -> dict[str, Tensor]:
        """``{similarity name: (layers, n) tensor}``."""
        return {name: getattr(self, name) for name in SIMILARITIES}


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the modules with their own parameters and a ``reset_parameters()``, input first.

    Example:
        >>> randomisable_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
        ['0', '2']
    """
    return [
        name
        for name, module in model.named_modules()
        if callable(getattr(module, "reset_parameters", None))
        and any(True for _ in module.parameters(recurse=False))
    ]


def _uniform_window(x: Tensor, size: int) -> Tensor:
    """Mean over ``size``-wide windows of the spatial dimensions (valid positions only)."""
    if x.ndim == 4:
        return F.avg_pool2d(x, size, stride=1)
    return F.avg_pool1d(x, size, stride=1)


def ssim(a: Tensor, b: Tensor, window: int = 7) -> Tensor:
    """Structural similarity per sample of ``(n, c, h, w)`` or ``(n, c, length)`` maps in [0, 1].

    Other shapes are flattened to ``(n, 1, d)``. Constants ``(0.01)^2`` and ``(0.03)^2`` (data
    range 1), a uniform window (shrunk to an odd size that fits), sample covariance; the mean
    over valid window positions and channels.

    Example:
        >>> x = torch.rand(2, 1, 8, 8)
        >>> ssim(x, x)
        tensor([1., 1.], dtype=torch.float64)
    """
    a, b = a.to(torch.float64), b.to(torch.float64)
    if a.ndim not in (3, 4):
        a, b = a.reshape(len(a), 1, -1), b.reshape(len(b), 1, -1)
    size = min(window, *a.shape[2:])
    size -= 1 - size % 2
    points = size ** (a.ndim - 2)
    cov_norm = points / (points - 1) if points > 1 else 1.0
    mu_a, mu_b = _uniform_window(a, size), _uniform_window(b, size)
    var_a = cov_norm * (_uniform_window(a * a, size) - mu_a * mu_a)
    var_b = cov_norm * (_uniform_window(b * b, size) - mu_b * mu_b)
    cov = cov_norm * (_uniform_window(a * b, size) - mu_a * mu_b)
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return value.flatten(1).mean(1)


def _max_normalised(a: Tensor) -> Tensor:
    peak = a.flatten(1).amax(1).reshape(-1, *([1] * (a.ndim - 1)))
    return a / torch.where(peak > 0, peak, torch.ones_like(peak))


def _support_of(inputs: Tensor, attributions: Tensor) -> Tensor:
    """Nonzero inputs, reduced over the dimensions the attributions broadcast over."""
    support = inputs != 0
    if support.shape == attributions.shape:
        return support
    if support.ndim != attributions.ndim:
        raise ValueError(
            f"cannot derive the support of `inputs` {tuple(inputs.shape)} for attributions of "
            f"shape {tuple(attributions.shape)}; pass `support` shaped like the attributions."
        )
    for dim, (size_in, size_a) in enumerate(zip(inputs.shape, attributions.shape)):
        if size_a == 1 and size_in > 1:
            support = support.any(dim, keepdim=True)
    return support


def _similarities(original: Tensor, other: Tensor, support: Tensor) -> tuple[Tensor, ...]:
    a, b = original.abs().to(torch.float64), other.abs().to(torch.float64)
    flat_a, flat_b = a.flatten(1), b.flatten(1)
    return (
        spearman(flat_a, flat_b),
        spearman(flat_a, flat_b, support.flatten(1)),
        ssim(_max_normalised(a), _max_normalised(b)),
    )


def _explain(
    explain_fn: ModelExplainFunc, model: nn.Module, inputs: Tensor, target: Tensor
) -> Tensor:
    with grad_enabled(inputs, target) as (x, t):
        out = explain_fn(model, x, t)
    if not isinstance(out, Tensor) or len(out) != len(inputs):
        raise ValueError(
            f"`explain_fn(model, inputs, target)` must return one attribution per input, got "
            f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))} for {len(inputs)} inputs."
        )
    return out.detach()


def _reset(module: nn.Module, seed: int) -> None:
    devices = sorted(
        {p.device.index or 0 for p in module.parameters(recurse=False) if p.device.type == "cuda"}
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.no_grad():
            module.reset_parameters()  # type: ignore[operator]


def _parameter_randomisation_update(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor | int,
    explain_fn: ModelExplainFunc,
    *,
    layer_order: str,
    layers: Sequence[str] | None,
    seed: int,
    attributions: Tensor | None,
    support: Tensor | None,
) -> RandomisationResult:
    if layer_order not in ("top_down", "bottom_up", "independent"):
        raise ValueError(
            f"`layer_order` must be 'top_down', 'bottom_up' or 'independent', got {layer_order!r}."
        )
    inputs = inputs.detach()
    target = check_target(target, len(inputs), inputs.device)
    available = randomisable_layers(model)
    if layers is None:
        names = available
    else:
        unknown = [name for name in layers if name not in available]
        if unknown:
            raise ValueError(
                f"`layers` names {unknown}, which are not randomisable layers of the model; "
                f"choose from {available}."
            )
        names = [name for name in available if name in set(layers)]
    if not names:
        raise ValueError(
            "the model has no layer with parameters and a `reset_parameters()`; nothing to "
            "randomise."
        )
    if layer_order != "bottom_up":
        names = names[::-1]
    original = (
        _explain(explain_fn, model, inputs, target)
        if attributions is None
        else attributions.detach()
    )
    if support is None:
        support = _support_of(inputs, original)
    else:
        support = support.to(original.device).bool().expand_as(original)
    twin = copy.deepcopy(model)
    saved = copy.deepcopy(twin.state_dict()) if layer_order == "independent" else None
    scores: list[tuple[Tensor, ...]] = []
    for name in names:
        if saved is not None:
            twin.load_state_dict(saved)
        _reset(twin.get_submodule(name), seed)
        other = _explain(explain_fn, twin, inputs, target)
        if other.shape != original.shape:
            raise ValueError(
                f"`explain_fn` returned shape {tuple(other.shape)} for the randomised model but "
                f"{tuple(original.shape)} for the original."
            )
        scores.append(_similarities(original, other.to(original.device), support))
    stacked = [torch.stack(column).float() for column in zip(*scores)]
    return RandomisationResult(names, *stacked)


def parameter_randomisation(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor | int,
    explain_fn: ModelExplainFunc,
    *,
    layer_order: LayerOrder = "top_down",
    layers: Sequence[str] | None = None,
    seed: int = 43,
    attributions: Tensor | None = None,
    support: Tensor | None = None,
) -> RandomisationResult:
    """Model parameter randomisation test: similarity per layer; lower is better.

    Args:
        model: the trained model (not modified: a copy is randomised).
        inputs: ``(n, ...)`` inputs (not modified).
        target: class index per sample (or one int for all).
        explain_fn: ``explain_fn(model, inputs, target) -> attributions``; called with
            gradients enabled.
        layer_order: ``"top_down"`` (cascading from the output), ``"bottom_up"`` or
            ``"independent"``.
        layers: names of the layers to randomise (default: :func:`randomisable_layers`).
        seed: seed of every ``reset_parameters()`` call.
        attributions: the original explanations (default: ``explain_fn(model, inputs,
            target)``).
        support: bool mask shaped like the attributions for ``spearman_support`` (default:
            nonzero inputs).

    Returns:
        A :class:`RandomisationResult` with ``(layers, n)`` similarities.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> def saliency(m, x, t):
        ...     x = x.clone().requires_grad_(True)
        ...     return torch.autograd.grad(m(x).gather(1, t[:, None]).sum(), x)[0]
        >>> res = parameter_randomisation(model, torch.rand(3, 4), 0, saliency)
        >>> res.layers, tuple(res.spearman.shape)
        (['2', '0'], (2, 3))
    """
    return _parameter_randomisation_update(
        model,
        inputs,
        target,
        explain_fn,
        layer_order=layer_order,
        layers=layers,
        seed=seed,
        attributions=attributions,
        support=support,
    )
