"""Completeness: do the attributions add up to the change of the output they explain?

For methods with the completeness property (integrated gradients, DeepLift, Shapley values,
conductance, ...) the attributions of an example sum to the change of the explained output
between the baseline and the input:

.. math::

    \\sum_i a_i(x) = f(x) - f(\\bar{x}).

The gap :math:`|\\sum_i a_i(x) - (f(x) - f(\\bar{x}))|` is numerical error for a correct
computation (a few percent for a coarse integral) and large when a hook-based method misses a
functional activation. The relative gap of a batch is
:math:`\\sum_n \\text{gap}_n / \\sum_n |f(x_n) - f(\\bar{x}_n)|`.
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-12

AttributionsLike = Tensor | tuple[Tensor, ...]


def _flat(attributions: AttributionsLike) -> Tensor:
    """``(N, features)``: one input's attributions flattened, or several inputs' concatenated
    (completeness holds for the sum over every explained input)."""
    parts = attributions if isinstance(attributions, tuple) else (attributions,)
    if not parts or not all(isinstance(a, Tensor) and a.dim() > 0 for a in parts):
        raise TypeError(
            "`attributions` must be a tensor (N, ...) or a tuple of them, one per input."
        )
    return torch.cat([a.detach().reshape(a.shape[0], -1) for a in parts], dim=1)


def _completeness_gap_update(
    attributions: AttributionsLike, output_delta: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-batch sums ``(sum |gap|, sum |f(x) - f(baseline)|)`` of a batch of attributions."""
    if not isinstance(output_delta, Tensor):
        raise TypeError("`attributions` and `output_delta` must be tensors.")
    flat = _flat(attributions)
    if output_delta.shape != flat.shape[:1]:
        raise ValueError(
            f"`output_delta` must hold one value per example, shape ({flat.shape[0]},), "
            f"got {tuple(output_delta.shape)} for attributions of {flat.shape[0]} examples."
        )
    totals = flat.sum(dim=1).double()
    delta = output_delta.detach().double().to(totals.device)
    return (totals - delta).abs().sum(), delta.abs().sum()


def _completeness_gap_compute(gap_sum: Tensor, delta_sum: Tensor) -> Tensor:
    """Relative gap from accumulated sums (0 when both are 0)."""
    return (gap_sum / delta_sum.clamp_min(_EPS)).float()


def completeness_gaps(attributions: AttributionsLike, output_delta: Tensor) -> Tensor:
    """Per-example absolute gap ``|sum(attributions) - output_delta|``.

    Example:
        >>> import torch
        >>> completeness_gaps(torch.tensor([[1.0, 2.0], [0.5, 0.5]]), torch.tensor([3.0, 2.0]))
        tensor([0., 1.])
    """
    _completeness_gap_update(attributions, output_delta)
    totals = _flat(attributions).sum(dim=1)
    return (totals - output_delta.detach().to(totals)).abs()


def relative_completeness_gap(attributions: AttributionsLike, output_delta: Tensor) -> Tensor:
    """``sum_n |sum_i a_ni - delta_n| / sum_n |delta_n|`` for a batch.

    Args:
        attributions: ``(N, ...)`` attributions, or a tuple of them (one per explained input;
            the sum runs over all of them).
        output_delta: ``(N,)`` values of ``f(x) - f(baseline)`` for the explained output.

    Example:
        >>> import torch
        >>> relative_completeness_gap(torch.tensor([[1.0, 2.0], [0.5, 0.5]]), torch.tensor([3.0, 2.0]))
        tensor(0.2000)
    """
    return _completeness_gap_compute(*_completeness_gap_update(attributions, output_delta))
