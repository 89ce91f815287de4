r"""The linear datamodeling score (LDS): does an attribution predict retraining?

Train models on random subsets :math:`S_1, \dots, S_s` of the training set (e.g. halves), and
record each target example's margin under each. An attribution ``scores`` (``M x N``) predicts
the margin of target :math:`i` under subset :math:`S` as :math:`\sum_{j \in S} \tau(z_i, z_j)`;
the LDS is the Spearman rank correlation between predicted and actual margins across the
subsets, averaged over the targets.

To measure it on your own model::

    subsets = random_subsets(len(train_set), 64, seed=0)
    margins = train_subset_models(make_module, train_set, targets, subsets, max_epochs=10)
    # train_subset_models: lightning_xai.modules (it runs a Trainer per subset)
    scores = TRAK(model, store, loss_fn).influence(targets, train_set).scores
    print(linear_datamodeling_score(scores, subsets, margins).score)

``lightning_xai.modules.train_subset_models`` runs one small ``Trainer`` per subset (no logger, checkpoints or
progress bar); a noise ceiling is the LDS of one set of subset models' margins predicting
another trained with different seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "LDSResult",
    "correct_class_margins",
    "linear_datamodeling_score",
    "random_subsets",
]


@dataclass
class LDSResult:
    """The linear datamodeling score.

    Attributes:
        score: the mean over targets of the per-target Spearman correlation (NaN targets,
            whose predictions or margins are constant across subsets, left out).
        per_target: ``(M,)`` per-target correlations.
    """

    score: float
    per_target: Tensor


def _ranks(x: Tensor) -> Tensor:
    """Ranks along dim 0 (ties averaged), as float64."""
    x = x.double()
    order = torch.argsort(x, dim=0, stable=True)
    ranks = torch.empty_like(x)
    ranks.scatter_(0, order, torch.arange(len(x), dtype=x.dtype)[:, None].expand_as(x).clone())
    # average ties: mean rank of equal values
    for col in range(x.shape[1]):
        values, inverse, counts = torch.unique(x[:, col], return_inverse=True, return_counts=True)
        if len(values) < len(x):
            sums = torch.zeros(len(values), dtype=x.dtype).index_add_(0, inverse, ranks[:, col])
            ranks[:, col] = (sums / counts)[inverse]
    return ranks


def linear_datamodeling_score(scores: Tensor, subsets: Tensor, margins: Tensor) -> LDSResult:
    """The LDS of ``scores`` against margins of models retrained on ``subsets``.

    Args:
        scores: ``(M, N)`` attribution of ``N`` training examples for ``M`` targets.
        subsets: ``(S, N)`` boolean membership masks, or ``(S, n)`` integer index lists.
        margins: ``(S, M)`` each target's margin under the model trained on each subset.

    Returns:
        :class:`LDSResult`.

    Raises:
        ValueError: shapes that do not fit, fewer than 3 subsets, or non-finite values.

    Example:
        >>> scores = torch.tensor([[1.0, 0.0, -1.0]])
        >>> subsets = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.bool)
        >>> margins = torch.tensor([[2.0], [-1.0], [0.5]])
        >>> round(linear_datamodeling_score(scores, subsets, margins).score, 6)
        1.0
    """
    scores, margins = torch.as_tensor(scores), torch.as_tensor(margins)
    subsets = torch.as_tensor(subsets)
    if scores.dim() != 2:
        raise ValueError(f"`scores` must be (M, N), got shape {tuple(scores.shape)}.")
    m, n = scores.shape
    if subsets.dtype != torch.bool:
        if subsets.dim() != 2 or subsets.is_floating_point():
            raise ValueError(
                "`subsets` must be (S, N) boolean masks or (S, n) integer indices, got "
                f"{subsets.dtype} of shape {tuple(subsets.shape)}."
            )
        mask = torch.zeros(len(subsets), n, dtype=torch.bool)
        mask.scatter_(1, subsets.long(), True)
        subsets = mask
    if subsets.dim() != 2 or subsets.shape[1] != n:
        raise ValueError(
            f"`subsets` must have one column per training example ({n}, as `scores`); got "
            f"shape {tuple(subsets.shape)}."
        )
    if margins.shape != (len(subsets), m):
        raise ValueError(
            f"`margins` must be (S, M) = ({len(subsets)}, {m}) (one row per subset, one "
            f"column per target), got {tuple(margins.shape)}."
        )
    if len(subsets) < 3:
        raise ValueError(f"`subsets` holds {len(subsets)} subsets; a correlation needs >= 3.")
    for name, t in (("scores", scores), ("margins", margins)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"`{name}` holds NaN or inf; the LDS would be meaningless.")
    predicted = subsets.double() @ scores.double().T  # (S, M)
    rp, rm = _ranks(predicted), _ranks(margins.double())
    rp, rm = rp - rp.mean(0), rm - rm.mean(0)
    denom = rp.norm(dim=0) * rm.norm(dim=0)
    per = (rp * rm).sum(0) / denom
    per = torch.where(denom > 0, per, torch.full_like(per, float("nan")))
    finite = per[torch.isfinite(per)]
    return LDSResult(float(finite.mean()) if len(finite) else float("nan"), per.float())


def random_subsets(n: int, num_subsets: int, fraction: float = 0.5, seed: int = 0) -> Tensor:
    """``(num_subsets, n)`` boolean masks, each holding ``round(fraction * n)`` random examples.

    Example:
        >>> random_subsets(10, 4, seed=0).sum(1).tolist()
        [5, 5, 5, 5]
    """
    check_positive_int("n", n)
    check_positive_int("num_subsets", num_subsets)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction!r}.")
    g = torch.Generator().manual_seed(seed)
    size = max(1, round(fraction * n))
    mask = torch.zeros(num_subsets, n, dtype=torch.bool)
    for s in range(num_subsets):
        mask[s, torch.randperm(n, generator=g)[:size]] = True
    return mask


def correct_class_margins(scores: Tensor, labels: Tensor) -> Tensor:
    """``scores[y] - logsumexp(scores[other classes])`` per row (the margin TRAK and LDS use).

    Example:
        >>> correct_class_margins(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
        tensor([2.])
    """
    labels = labels.long().reshape(-1)
    right = scores.gather(1, labels[:, None]).squeeze(1)
    others = scores.scatter(1, labels[:, None], float("-inf"))
    return right - torch.logsumexp(others, dim=1)
