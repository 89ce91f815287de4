r"""Localisation of attributions against a known mask (the ground-truth evidence).

With ``absolute=True`` (the default for all three) the relevance is :math:`|\text{attribution}|`;
with ``absolute=False`` the signed attribution. All three are in [0, 1]; *higher is better*.

* **Pointing game** (Zhang et al. 2018): 1 if a feature of maximal relevance lies in the mask
  (any of them when several tie), else 0.
* **Relevance mass accuracy** (Arras et al. 2022): the share of the total relevance inside the
  mask; 0 when the total relevance is 0.
* **Relevance rank accuracy** (Arras et al. 2022): with :math:`K` the size of the mask, the
  share of the :math:`K` most relevant features that lie in the mask (ties broken by feature
  index).

**Empty masks.** A sample whose mask is empty has nothing to localise: with
``empty_mask="raise"`` (default) the call raises, naming the samples; with ``"zero"`` it scores
0 (a miss) and a warning names them. It never counts as a hit and never yields NaN.

``mask`` broadcasts to ``attributions`` (e.g. one ``(n, 1, h, w)`` mask for every channel).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor

from lightning_xai.metrics.functional._quality import check_mask

__all__ = ["pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy"]

EmptyMask = Literal["raise", "zero"]


def _prepare(
    attributions: Tensor, mask: Tensor, absolute: bool, empty_mask: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat float64 relevance, flat bool mask and the ``(n,)`` empty-mask flags."""
    if empty_mask not in ("raise", "zero"):
        raise ValueError(f"`empty_mask` must be 'raise' or 'zero', got {empty_mask!r}.")
    if attributions.ndim < 2:
        raise ValueError(
            f"`attributions` must be (n, ...) with a sample dimension, got shape "
            f"{tuple(attributions.shape)}."
        )
    m = check_mask(mask, attributions).flatten(1)
    a = attributions.detach().flatten(1).to(torch.float64)
    if absolute:
        a = a.abs()
    empty = ~m.any(1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        if empty_mask == "raise":
            raise ValueError(
                f"`mask` is empty for samples {rows}; an empty mask cannot be hit. Drop those "
                "samples or pass empty_mask='zero' to score them 0."
            )
        warnings.warn(f"`mask` is empty for samples {rows}; they score 0.", stacklevel=3)
    return a, m, empty


def _pointing_game_update(
    attributions: Tensor, mask: Tensor, absolute: bool, empty_mask: str
) -> Tensor:
    a, m, empty = _prepare(attributions, mask, absolute, empty_mask)
    at_max = a == a.amax(1, keepdim=True)
    hit = (at_max & m).any(1) & ~empty
    return hit.to(torch.float64)


def _relevance_mass_update(
    attributions: Tensor, mask: Tensor, absolute: bool, empty_mask: str
) -> Tensor:
    a, m, empty = _prepare(attributions, mask, absolute, empty_mask)
    total = a.sum(1)
    inside = (a * m).sum(1)
    ok = (total != 0) & ~empty
    return torch.where(
        ok, inside / total.where(ok, torch.ones_like(total)), torch.zeros_like(total)
    )


def _relevance_rank_update(
    attributions: Tensor, mask: Tensor, absolute: bool, empty_mask: str
) -> Tensor:
    a, m, empty = _prepare(attributions, mask, absolute, empty_mask)
    k = m.sum(1)
    order = (-a).sort(dim=1, stable=True).indices
    in_mask = m.gather(1, order)
    top = torch.arange(a.shape[1], device=a.device)[None, :] < k[:, None]
    hits = (in_mask & top).sum(1).to(torch.float64)
    return torch.where(empty, torch.zeros_like(hits), hits / k.clamp_min(1))


def pointing_game(
    attributions: Tensor, mask: Tensor, absolute: bool = True, empty_mask: EmptyMask = "raise"
) -> Tensor:
    """1 where the most relevant feature lies in ``mask``, else 0; higher is better.

    Args:
        attributions: ``(n, ...)`` attributions (not modified).
        mask: ground-truth mask broadcasting to ``attributions`` (nonzero: inside).
        absolute: rank by ``|attributions|`` (``True``) or by the signed value.
        empty_mask: ``"raise"`` or ``"zero"`` for samples with an empty mask.

    Returns:
        ``(n,)`` values in {0, 1}.

    Example:
        >>> attr = torch.tensor([[0.1, 0.9, 0.0], [0.9, 0.1, 0.0]])
        >>> pointing_game(attr, torch.tensor([[0, 1, 0], [0, 1, 0]]))
        tensor([1., 0.])
    """
    return _pointing_game_update(attributions, mask, absolute, empty_mask).float()


def relevance_mass_accuracy(
    attributions: Tensor, mask: Tensor, absolute: bool = True, empty_mask: EmptyMask = "raise"
) -> Tensor:
    """Share of the relevance inside ``mask``; higher is better.

    Args:
        attributions: ``(n, ...)`` attributions (not modified).
        mask: ground-truth mask broadcasting to ``attributions`` (nonzero: inside).
        absolute: use ``|attributions|`` (``True``) or the signed value.
        empty_mask: ``"raise"`` or ``"zero"`` for samples with an empty mask.

    Returns:
        ``(n,)`` values (in [0, 1] with ``absolute``); 0 for all-zero attributions.

    Example:
        >>> relevance_mass_accuracy(torch.tensor([[3.0, -1.0, 0.0]]), torch.tensor([[1, 0, 0]]))
        tensor([0.7500])
    """
    return _relevance_mass_update(attributions, mask, absolute, empty_mask).float()


def relevance_rank_accuracy(
    attributions: Tensor, mask: Tensor, absolute: bool = True, empty_mask: EmptyMask = "raise"
) -> Tensor:
    """Share of the ``K = |mask|`` most relevant features that lie in ``mask``; higher is better.

    Args:
        attributions: ``(n, ...)`` attributions (not modified).
        mask: ground-truth mask broadcasting to ``attributions`` (nonzero: inside).
        absolute: rank by ``|attributions|`` (``True``) or by the signed value.
        empty_mask: ``"raise"`` or ``"zero"`` for samples with an empty mask.

    Returns:
        ``(n,)`` values in [0, 1].

    Example:
        >>> attr = torch.tensor([[0.9, 0.8, 0.1, 0.0]])
        >>> relevance_rank_accuracy(attr, torch.tensor([[1, 0, 1, 0]]))
        tensor([0.5000])
    """
    return _relevance_rank_update(attributions, mask, absolute, empty_mask).float()
