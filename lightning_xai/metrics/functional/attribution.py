r"""Quality of attributions: completeness gap and rank correlation between two runs.

Completeness gap, for methods whose attributions should add up to the change of the explained
output (integrated gradients, DeepLift, Shapley values, ...):

.. math::

    \text{gap} = \frac{\sum_n |\sum_i a_{ni} - (f(x_n) - f(\bar{x}_n))|}{\sum_n |f(x_n) - f(\bar{x}_n)|}.

Rank agreement between the attributions of the same examples at two moments (e.g. two epochs):
the Spearman correlation over features, per example (ties get average ranks), averaged over
examples. Higher is better: 1 means the feature ranking did not change (stable explanations), 0
unrelated, -1 reversed. The AttributionLogger logs it as ``rank_agreement_with_previous``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_xai.attribution.completeness import (
    AttributionsLike,
    _completeness_gap_compute,
    _completeness_gap_update,
    _flat,
)

__all__ = ["attribution_rank_correlation", "completeness_gap"]


def completeness_gap(attributions: AttributionsLike, output_delta: Tensor) -> Tensor:
    """Relative completeness gap of a batch of attributions (lower is better, 0 is exact).

    Args:
        attributions: ``(N, ...)`` attributions, or a tuple with one per explained input (the
            attributions of all inputs together add up to the output change).
        output_delta: ``(N,)`` values of ``f(x) - f(baseline)`` for the explained outputs, e.g.
            :attr:`~lightning_xai.attribution.AttributionResult.output_delta`.

    Example:
        >>> completeness_gap(torch.tensor([[1.0, 2.0], [0.5, 0.5]]), torch.tensor([3.0, 2.0]))
        tensor(0.2000)
    """
    return _completeness_gap_compute(*_completeness_gap_update(attributions, output_delta))


def _average_ranks(values: Tensor) -> Tensor:
    """1-based ranks along the last dimension of a 2-D tensor; ties share their average rank."""
    ordered = values.sort(dim=1).values.contiguous()
    below = torch.searchsorted(ordered, values.contiguous(), side="left")
    up_to = torch.searchsorted(ordered, values.contiguous(), side="right")
    return (below + up_to + 1).double() / 2


def _rank_correlation_update(
    previous: AttributionsLike, current: AttributionsLike
) -> tuple[Tensor, Tensor]:
    """Sum of per-example Spearman correlations and the number of examples that have one."""
    if isinstance(previous, tuple):
        previous = _flat(previous)
    if isinstance(current, tuple):
        current = _flat(current)
    if previous.shape != current.shape or previous.dim() < 2:
        raise ValueError(
            "`previous` and `current` must be attributions of the same examples with the same "
            f"shape (N, ...), got {tuple(previous.shape)} and {tuple(current.shape)}."
        )
    a = _average_ranks(previous.detach().reshape(len(previous), -1).cpu())
    b = _average_ranks(current.detach().reshape(len(current), -1).cpu())
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    valid = denom > 0  # constant attributions have no ranking
    corr = (a * b).sum(dim=1)[valid] / denom[valid]
    device = current.device
    return corr.sum().to(device), torch.tensor(int(valid.sum()), device=device)


def _rank_correlation_compute(corr_sum: Tensor, count: Tensor) -> Tensor:
    """Mean correlation; NaN when no example had a ranking."""
    if int(count) == 0:
        return torch.tensor(float("nan"), device=corr_sum.device)
    return (corr_sum / count).float()


def attribution_rank_correlation(previous: AttributionsLike, current: AttributionsLike) -> Tensor:
    """Mean per-example Spearman correlation between two attributions of the same examples.

    Args:
        previous: ``(N, ...)`` attributions, e.g. from the previous epoch (a tuple for several
            explained inputs: their features are ranked together).
        current: ``(N, ...)`` attributions of the same examples now.

    Returns:
        A scalar in [-1, 1], higher meaning more stable rankings; NaN (undefined) when every
        example has constant attributions, e.g. all zero, in either argument.

    Example:
        >>> a = torch.tensor([[0.1, 0.5, 0.2], [1.0, 2.0, 3.0]])
        >>> attribution_rank_correlation(a, a)
        tensor(1.)
        >>> attribution_rank_correlation(a, -a)
        tensor(-1.)
    """
    return _rank_correlation_compute(*_rank_correlation_update(previous, current))
