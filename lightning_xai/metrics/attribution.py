"""Attribution quality as ``torchmetrics`` metrics (DDP-reducible)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_xai.attribution.completeness import (
    AttributionsLike,
    _completeness_gap_compute,
    _completeness_gap_update,
)
from lightning_xai.metrics.functional.attribution import (
    _rank_correlation_compute,
    _rank_correlation_update,
)

__all__ = ["AttributionRankCorrelation", "CompletenessGap"]


class CompletenessGap(Metric):
    r"""Relative completeness gap of attributions, over every batch seen (lower is better).

    :math:`\sum_n |\sum_i a_{ni} - \Delta_n| / \sum_n |\Delta_n|` with
    :math:`\Delta_n = f(x_n) - f(\bar{x}_n)`, the change of the explained output between
    baseline and input. See :func:`~lightning_xai.metrics.functional.completeness_gap`.

    Example:
        >>> metric = CompletenessGap()
        >>> metric.update(torch.tensor([[1.0, 2.0]]), torch.tensor([3.0]))
        >>> metric.update(torch.tensor([[0.5, 0.5]]), torch.tensor([2.0]))
        >>> metric.compute()
        tensor(0.2000)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    gap_sum: Tensor
    delta_sum: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "gap_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "delta_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, attributions: AttributionsLike, output_delta: Tensor) -> None:
        """Add a batch of attributions ``(N, ...)`` (a tuple for several inputs) and their
        ``f(x) - f(baseline)`` ``(N,)``."""
        gap_sum, delta_sum = _completeness_gap_update(attributions, output_delta)
        self.gap_sum += gap_sum.to(self.gap_sum.device)
        self.delta_sum += delta_sum.to(self.delta_sum.device)

    def compute(self) -> Tensor:
        """The relative gap over everything seen."""
        return _completeness_gap_compute(self.gap_sum, self.delta_sum)


class AttributionRankCorrelation(Metric):
    """Mean Spearman rank agreement between two attributions of the same examples (higher is
    better: more stable explanations).

    Each example's features are ranked in both attributions (ties share their average rank)
    and correlated; the metric is the mean over examples. 1: same ranking, 0: unrelated, -1:
    reversed. Examples whose attributions are constant have no ranking and are skipped; when
    every example is constant the result is NaN (undefined, not "no change"). The
    :class:`~lightning_xai.callbacks.AttributionLogger` logs it between runs as
    ``rank_agreement_with_previous``. See
    :func:`~lightning_xai.metrics.functional.attribution_rank_correlation`.

    Example:
        >>> metric = AttributionRankCorrelation()
        >>> metric.update(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 3.0, 2.0]]))
        >>> metric.compute()
        tensor(0.5000)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    corr_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "corr_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, previous: AttributionsLike, current: AttributionsLike) -> None:
        """Add the attributions of a batch of examples at two moments."""
        corr_sum, count = _rank_correlation_update(previous, current)
        self.corr_sum += corr_sum.to(self.corr_sum)
        self.count += count.to(self.count.device)

    def compute(self) -> Tensor:
        """Mean correlation over the examples seen (NaN if none had a ranking)."""
        return _rank_correlation_compute(self.corr_sum, self.count)
