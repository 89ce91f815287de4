r"""Right-reasons score: the share of input-gradient mass inside the annotation mask.

For one sample with input gradient :math:`g` and mask :math:`A` (1 = forbidden feature)

.. math::

    s_n = \frac{\sum_d |A_{nd}\, g_{nd}|}{\sum_d |g_{nd}|},

and the score is the mean of :math:`s_n` over samples. It lies in [0, 1]; **lower is better**:
0 means the forbidden features do not influence the prediction at all, 1 means only they do.
A sample with an empty mask scores 0. One with a zero gradient also scores 0, which reads as
perfect although nothing was measured, so it comes with a warning naming how many samples had no
gradient. NaN or inf gradients or mask values, mask weights outside [0, 1] and empty batches
raise a ``ValueError`` naming the argument.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from lightning_xai.penalties.masks import check_mask
from lightning_xai.utilities.tensor_checks import (
    check_finite_rows,
    check_not_empty,
    check_tensor,
    check_unit_interval,
)

__all__ = ["right_reasons_score"]


def _right_reasons_score_update(input_gradients: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of per-sample shares and the number of samples."""
    check_tensor("input_gradients", input_gradients)
    check_not_empty("input_gradients", input_gradients)
    check_finite_rows("input_gradients", input_gradients.detach())
    if (
        isinstance(mask, Tensor)
        and isinstance(input_gradients, Tensor)
        and mask.dim() < input_gradients.dim()
        and tuple(mask.shape) == tuple(input_gradients.shape[: mask.dim()])
    ):  # one value per token (N, T) for gradients at an embedding (N, T, E)
        mask = mask.reshape(*mask.shape, *([1] * (input_gradients.dim() - mask.dim())))
    weights = check_mask(mask, input_gradients)
    if weights.dtype != torch.bool:
        check_unit_interval("mask", weights.detach(), "mask weights")
    magnitude = input_gradients.detach().abs().to(torch.float64)
    inside = (weights.detach().to(torch.float64) * magnitude).flatten(1).sum(dim=1)
    total = magnitude.flatten(1).sum(dim=1)
    shares = torch.where(total > 0, inside / total.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    silent = int((total == 0).sum())
    if silent:
        warnings.warn(
            f"Right-reasons score: {silent} of {total.numel()} samples have zero "
            "`input_gradients` (no gradient mass), so they score 0, which reads as perfect "
            "although nothing was measured; check that the model's output depends on its input "
            "(e.g. saturated or dead activations).",
            UserWarning,
            stacklevel=3,
        )
    return shares.sum(), torch.tensor(shares.numel(), dtype=torch.long, device=shares.device)


def _right_reasons_score_compute(share_sum: Tensor, num_samples: Tensor) -> Tensor:
    """Mean share; 0 when there were no samples."""
    if int(num_samples) == 0:
        return torch.zeros((), dtype=torch.float32, device=share_sum.device)
    return (share_sum / num_samples).to(torch.float32)


def right_reasons_score(input_gradients: Tensor, mask: Tensor) -> Tensor:
    """Share of input-gradient mass inside the mask, averaged over samples (lower is better).

    Args:
        input_gradients: ``(N, ...)`` input gradients, e.g.
            :attr:`~lightning_xai.penalties.RightReasonsResult.input_gradients`.
        mask: ``bool`` or floating-point annotations with the gradients' shape (or one that
            broadcasts to it, or a leading part of it such as one value per token ``(N, T)``
            for gradients at an embedding ``(N, T, E)``), 1/``True`` = forbidden feature.

    Returns:
        A scalar ``float32`` tensor in [0, 1].

    Example:
        >>> grads = torch.tensor([[3.0, -1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
        >>> mask = torch.tensor([[True, False, False, False], [False, False, False, False]])
        >>> right_reasons_score(grads, mask)  # (0.75 + 0.0) / 2
        tensor(0.3750)
        >>> tokens = torch.tensor([[True, False], [False, False]])  # one value per token
        >>> right_reasons_score(grads.reshape(2, 2, 2), tokens)  # (4/4 + 0.0) / 2
        tensor(0.5000)
    """
    return _right_reasons_score_compute(*_right_reasons_score_update(input_gradients, mask))
