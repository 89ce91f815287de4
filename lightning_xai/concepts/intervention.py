"""Test-time concept interventions: a person corrects predicted concepts, the task follows.

Works on any model with the concept-network protocol (``concept_outputs`` / ``task_outputs``,
see :mod:`lightning_xai.concepts.networks`): the plain networks and the
:class:`~lightning_xai.modules.ConceptBottleneckModel` /
:class:`~lightning_xai.modules.ConceptEmbeddingModel` alike, without a ``Trainer``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_xai.concepts.networks import ConceptOutputs

__all__ = [
    "STRATEGIES",
    "InterventionCurve",
    "Strategy",
    "intervene",
    "intervention_curves",
    "intervention_mask",
    "intervention_order",
    "random_intervention",
]

Strategy = Literal["random", "uncertainty"]
#: The orders in which concepts are corrected.
STRATEGIES: tuple[str, ...] = ("random", "uncertainty")
Which = Collection[int] | float | int | Tensor


def _check_model(model: Any) -> None:
    for method in ("concept_outputs", "task_outputs"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                f"`model` ({type(model).__name__}) has no `{method}` method; interventions need "
                "a concept model such as lightning_xai.modules.ConceptBottleneckModel, "
                "ConceptEmbeddingModel or lightning_xai.concepts.BottleneckNetwork."
            )


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {STRATEGIES}, got {strategy!r}: 'random' corrects "
            "concepts in a random order, 'uncertainty' the least certain predictions first."
        )


def intervention_order(probs: Tensor, strategy: Strategy = "random", seed: int = 0) -> Tensor:
    """For each row, the concept indices in the order they are corrected, ``(N, k)``.

    ``"uncertainty"`` puts the predictions closest to 0.5 first (ties by index); ``"random"``
    draws one seeded permutation per row.

    Example:
        >>> intervention_order(torch.tensor([[0.9, 0.45, 0.2]]), "uncertainty")
        tensor([[1, 2, 0]])
    """
    _check_strategy(strategy)
    if probs.dim() != 2:
        raise ValueError(f"`probs` must have shape (N, k), got {tuple(probs.shape)}.")
    if strategy == "uncertainty":
        certainty = (probs.detach() - 0.5).abs()
        return torch.argsort(certainty, dim=1, stable=True)
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(probs.shape, generator=g)
    return torch.argsort(keys, dim=1).to(probs.device)


def intervention_mask(
    probs: Tensor, which: Which, strategy: Strategy = "random", seed: int = 0
) -> Tensor:
    """Boolean ``(N, k)`` mask of the concepts to correct.

    Args:
        probs: ``(N, k)`` predicted concept probabilities (for ``"uncertainty"`` and the shape).
        which: a collection of concept indices (the same for every row), an ``int`` count or a
            ``float`` fraction of the ``k`` concepts chosen per row by ``strategy``, or a
            Boolean mask ``(k,)`` or ``(N, k)``.
        strategy: ``"random"`` or ``"uncertainty"`` (most uncertain first), for counts and
            fractions.
        seed: seed of the random order.

    Example:
        >>> probs = torch.tensor([[0.9, 0.45, 0.2], [0.5, 0.99, 0.0]])
        >>> intervention_mask(probs, 1, "uncertainty").int()
        tensor([[0, 1, 0],
                [1, 0, 0]], dtype=torch.int32)
        >>> intervention_mask(probs, {0, 2}).int()
        tensor([[1, 0, 1],
                [1, 0, 1]], dtype=torch.int32)
    """
    n, k = probs.shape
    if isinstance(which, Tensor) and which.dtype == torch.bool:
        if which.shape not in ((k,), (n, k)):
            raise ValueError(
                f"A Boolean `which` mask must have shape ({k},) or ({n}, {k}), got "
                f"{tuple(which.shape)}."
            )
        return which.to(probs.device).expand(n, k).clone()
    if isinstance(which, bool):
        raise TypeError(f"`which` must be indices, a count or a fraction, got {which!r}.")
    if isinstance(which, float):
        if not 0.0 <= which <= 1.0:
            raise ValueError(f"A fraction `which` must be in [0, 1], got {which!r}.")
        which = round(which * k)
    if isinstance(which, int):
        if not 0 <= which <= k:
            raise ValueError(f"A count `which` must be in [0, {k}] (the concepts), got {which}.")
        order = intervention_order(probs, strategy, seed)
        mask = torch.zeros(n, k, dtype=torch.bool, device=probs.device)
        mask.scatter_(1, order[:, :which], True)
        return mask
    if isinstance(which, Tensor):
        which = which.flatten().tolist()
    indices = list(which)  # type: ignore[arg-type]
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < k for i in indices):
        raise ValueError(
            f"`which` must hold concept indices in [0, {k}), got {sorted(indices)!r}; or pass a "
            "count (int), a fraction (float) or a Boolean mask."
        )
    mask = torch.zeros(n, k, dtype=torch.bool, device=probs.device)
    mask[:, indices] = True
    return mask


def _inputs(x: Tensor | Sequence[Any]) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def intervene(
    model: nn.Module,
    x: Tensor | Sequence[Any],
    true_concepts: Tensor,
    which: Which,
    *,
    strategy: Strategy = "random",
    seed: int = 0,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Tensor:
    """Task logits of ``model`` on ``x`` after correcting the concepts ``which``.

    Args:
        model: a concept model (``concept_outputs``/``task_outputs``).
        x: its input, or a tuple of positional inputs.
        true_concepts: ``(N, k)`` true concept values (0/1).
        which: concept indices, a count, a fraction or a Boolean mask (see
            :func:`intervention_mask`).
        strategy: how counts and fractions choose concepts: ``"random"`` or ``"uncertainty"``.
        seed: seed of the random order.
        forward_kwargs: further keyword arguments of the model's encoder.

    Example:
        >>> from lightning_xai.concepts import BottleneckNetwork
        >>> net = BottleneckNetwork(nn.Linear(4, 8), n_concepts=3, n_classes=2)
        >>> x, c = torch.rand(5, 4), torch.randint(0, 2, (5, 3)).float()
        >>> intervene(net, x, c, which=1.0).shape
        torch.Size([5, 2])
    """
    _check_model(model)
    out: ConceptOutputs = model.concept_outputs(*_inputs(x), **dict(forward_kwargs or {}))
    _check_concepts(true_concepts, out.concept_logits)
    mask = intervention_mask(out.concept_probs, which, strategy, seed)
    return model.task_outputs(out, true_concepts, mask)


def _check_concepts(true_concepts: Tensor, logits: Tensor) -> None:
    if not isinstance(true_concepts, Tensor) or true_concepts.shape != logits.shape:
        shape = tuple(true_concepts.shape) if isinstance(true_concepts, Tensor) else None
        raise ValueError(
            f"`true_concepts` must have the shape of the predicted concepts "
            f"{tuple(logits.shape)}, got {shape if shape is not None else type(true_concepts)}."
        )


def random_intervention(true_concepts: Tensor, probability: float) -> Tensor:
    """A training-time intervention mask (CEM's RandInt): each concept with a known value is
    corrected with ``probability``.

    Example:
        >>> random_intervention(torch.ones(2, 3), 0.0).any().item()
        False
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"`probability` must be in [0, 1], got {probability!r}.")
    mask = torch.rand(true_concepts.shape, device=true_concepts.device) < probability
    return mask & ~torch.isnan(true_concepts)


@dataclass
class InterventionCurve:
    """Task accuracy against the number of concepts corrected.

    Attributes:
        strategy: ``"random"`` or ``"uncertainty"``.
        counts: numbers of concepts corrected.
        accuracy: task accuracy after correcting ``counts[i]`` concepts.
        n_samples: examples the accuracies were measured on.
    """

    strategy: str
    counts: list[int]
    accuracy: list[float]
    n_samples: int
    extra: dict[str, Any] = field(default_factory=dict)

    def area(self) -> float:
        """Mean accuracy over the curve's points (the normalised area under it)."""
        return sum(self.accuracy) / len(self.accuracy)

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per point (for CSV files)."""
        return [
            {"strategy": self.strategy, "concepts_corrected": c, "task_accuracy": a}
            for c, a in zip(self.counts, self.accuracy)
        ]


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    if logits.dim() == 2 and logits.shape[1] > 1:
        if labels.dim() == 2:  # multilabel 0/1 targets
            return float(((logits > 0) == labels.bool()).float().mean())
        return float((logits.argmax(dim=1) == labels).float().mean())
    return float(((logits.reshape(-1) > 0) == labels.reshape(-1).bool()).float().mean())


def intervention_curves(
    model: nn.Module,
    x: Tensor | Sequence[Any],
    true_concepts: Tensor,
    labels: Tensor,
    *,
    strategies: Sequence[Strategy] = STRATEGIES,
    counts: Sequence[int] | None = None,
    seed: int = 0,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> list[InterventionCurve]:
    """Task accuracy after correcting 0, 1, ..., k concepts, for each strategy (one encoder
    pass; the head runs once per point).

    Args:
        model: a concept model.
        x: its input, or a tuple of positional inputs.
        true_concepts: ``(N, k)`` true concept values.
        labels: task labels: class indices ``(N,)``, or 0/1 targets for single-logit or
            multilabel heads.
        strategies: the orders to measure.
        counts: the numbers of corrected concepts (default ``0..k``).
        seed: seed of the random order.
        forward_kwargs: further keyword arguments of the model's encoder.

    Example:
        >>> from lightning_xai.concepts import BottleneckNetwork
        >>> net = BottleneckNetwork(nn.Linear(4, 8), n_concepts=3, n_classes=2)
        >>> x, c = torch.rand(6, 4), torch.randint(0, 2, (6, 3)).float()
        >>> curves = intervention_curves(net, x, c, c[:, 0].long())
        >>> [(curve.strategy, curve.counts) for curve in curves]
        [('random', [0, 1, 2, 3]), ('uncertainty', [0, 1, 2, 3])]
    """
    _check_model(model)
    for strategy in strategies:
        _check_strategy(strategy)
    with torch.no_grad():
        out: ConceptOutputs = model.concept_outputs(*_inputs(x), **dict(forward_kwargs or {}))
        _check_concepts(true_concepts, out.concept_logits)
        k = out.concept_logits.shape[1]
        points = list(range(k + 1)) if counts is None else [int(c) for c in counts]
        labels = labels.to(out.task_logits.device)
        curves = []
        for strategy in strategies:
            order = intervention_order(out.concept_probs, strategy, seed)
            accuracy = []
            for count in points:
                if not 0 <= count <= k:
                    raise ValueError(f"`counts` must lie in [0, {k}], got {count}.")
                mask = torch.zeros_like(out.concept_logits, dtype=torch.bool)
                mask.scatter_(1, order[:, :count], True)
                logits = model.task_outputs(out, true_concepts, mask)
                accuracy.append(_accuracy(logits, labels))
            curves.append(InterventionCurve(strategy, points, accuracy, len(labels)))
    return curves
