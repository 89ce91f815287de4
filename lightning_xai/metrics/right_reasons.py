"""Right-reasons score as a ``torchmetrics`` metric (DDP-reducible)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_xai.metrics.functional.right_reasons import (
    _right_reasons_score_compute,
    _right_reasons_score_update,
)

__all__ = ["RightReasonsScore"]


class RightReasonsScore(Metric):
    r"""Share of input-gradient mass inside the annotation mask, averaged over samples.

    For each sample :math:`s_n = \sum_d |A_{nd} g_{nd}| / \sum_d |g_{nd}|`; the metric is the
    mean of :math:`s_n` over every sample seen (on every process). It lies in [0, 1] and
    **lower is better**: 0 means the forbidden features (mask = 1) carry no gradient.
    See :func:`~lightning_xai.metrics.functional.right_reasons_score`.

    Example:
        >>> metric = RightReasonsScore()
        >>> metric.update(torch.tensor([[3.0, -1.0]]), torch.tensor([[True, False]]))
        >>> metric.update(torch.tensor([[1.0, 1.0]]), torch.tensor([[False, False]]))
        >>> metric.compute()
        tensor(0.3750)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    share_sum: Tensor
    num_samples: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "share_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "num_samples", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, input_gradients: Tensor, mask: Tensor) -> None:
        """Add a batch of input gradients and their masks."""
        share_sum, num_samples = _right_reasons_score_update(input_gradients, mask)
        self.share_sum += share_sum
        self.num_samples += num_samples

    def compute(self) -> Tensor:
        """Mean share over all samples seen."""
        return _right_reasons_score_compute(self.share_sum, self.num_samples)
