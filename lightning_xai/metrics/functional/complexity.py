r"""Complexity of attributions: how concentrated the relevance is.

Both work on :math:`a = |\text{attribution}|` flattened per sample (:math:`d` features).

* **Sparseness** (Chalasani et al. 2020): the Gini index of :math:`a` sorted ascending,
  :math:`\sum_i (2i - d - 1)\, a_{(i)} / (d \sum_i a_i)`. In [0, 1); *higher is better*
  (sparser). All-zero attributions score 0 (nothing is singled out).
* **Complexity** (Bhatt et al. 2020): the entropy :math:`-\sum_i p_i \log p_i` of
  :math:`p = a / \sum_i a_i` (natural log, :math:`0 \log 0 = 0`). In [0, log d]; *lower is
  better* (simpler). All-zero attributions score :math:`\log d`, the value of a uniform one.

Attributions are never modified; the values are computed in float64 and returned as float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["complexity", "sparseness"]


def _flat_abs(attributions: Tensor) -> Tensor:
    if attributions.ndim < 1 or len(attributions) == 0 or attributions[0].numel() == 0:
        raise ValueError(
            f"`attributions` must be (n, ...) with at least one feature per sample, got shape "
            f"{tuple(attributions.shape)}."
        )
    if attributions.ndim == 1:
        attributions = attributions[:, None]
    values = attributions.detach().flatten(1).to(torch.float64).abs()
    if not torch.isfinite(values).all():
        raise ValueError("`attributions` holds non-finite values; check the explanation method.")
    return values


def _sparseness_update(attributions: Tensor) -> Tensor:
    a = _flat_abs(attributions).sort(dim=1).values
    d = a.shape[1]
    i = torch.arange(1, d + 1, dtype=torch.float64, device=a.device)
    total = a.sum(1)
    gini = ((2 * i - d - 1) * a).sum(1) / (d * total.where(total > 0, torch.ones_like(total)))
    return torch.where(total > 0, gini, torch.zeros_like(gini))


def _complexity_update(attributions: Tensor) -> Tensor:
    a = _flat_abs(attributions)
    total = a.sum(1, keepdim=True)
    p = a / total.where(total > 0, torch.ones_like(total))
    entropy = 0.0 - torch.special.xlogy(p, p).sum(1)  # 0.0 - x: no negative zero
    return torch.where(
        total.squeeze(1) > 0, entropy, torch.full_like(entropy, math.log(a.shape[1]))
    )


def sparseness(attributions: Tensor) -> Tensor:
    """Gini index of ``|attributions|`` per sample; higher is better (sparser).

    Args:
        attributions: ``(n, ...)`` attributions (not modified).

    Returns:
        ``(n,)`` values in [0, 1); 0 for all-zero or uniform attributions.

    Example:
        >>> sparseness(torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
        tensor([0.7500, 0.0000])
    """
    return _sparseness_update(attributions).float()


def complexity(attributions: Tensor) -> Tensor:
    """Entropy of the normalised ``|attributions|`` per sample; lower is better (simpler).

    Args:
        attributions: ``(n, ...)`` attributions (not modified).

    Returns:
        ``(n,)`` values in [0, log d]; ``log d`` for all-zero attributions.

    Example:
        >>> complexity(torch.tensor([[0.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]))
        tensor([0.0000, 1.3863])
    """
    return _complexity_update(attributions).float()
