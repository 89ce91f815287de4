"""Rule accuracy, fidelity and complexity as ``torchmetrics`` metrics (DDP-reducible)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_xai.logic.rule import Rule
from lightning_xai.metrics.functional.logic import (
    _check_num_classes,
    _rule_agreement_compute,
    _rule_agreement_update,
    _rule_complexity_update,
)
from lightning_xai.utilities.tensor_checks import check_threshold

__all__ = ["RuleAccuracy", "RuleComplexity", "RuleFidelity"]


class _RuleAgreement(Metric):
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor
    _target_name = "target"

    def __init__(
        self,
        rule: Rule,
        threshold: float | None = None,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(rule, Rule):
            raise TypeError(
                f"`rule` must be a lightning_xai.logic.Rule, got {type(rule).__name__}."
            )
        if threshold is not None:
            threshold = check_threshold("threshold", threshold)
        _check_num_classes(rule, num_classes)
        self.rule = rule
        self.threshold = threshold
        self.num_classes = num_classes
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, concepts: Tensor, target: Tensor) -> None:
        """Add a batch of concepts and class targets (or predictions); both are checked first
        (see :func:`~lightning_xai.metrics.functional.rule_accuracy`)."""
        correct, total = _rule_agreement_update(
            self.rule, concepts, target, self.threshold, self.num_classes, self._target_name
        )
        self.correct += correct.to(self.correct.device)
        self.total += total.to(self.total.device)

    def compute(self) -> Tensor:
        """Share of rows where the rule agreed."""
        return _rule_agreement_compute(self.correct, self.total)


class RuleAccuracy(_RuleAgreement):
    """Share of rows where a rule agrees with the labels of its class.

    ``update(concepts, target)`` takes targets as class indices ``(N,)``, binary membership
    ``(N,)`` or multilabel ``(N, n_classes)``. See
    :func:`~lightning_xai.metrics.functional.rule_accuracy`.

    Args:
        rule: the rule.
        threshold: truth threshold of concepts in [0, 1] (default: ``rule.threshold``).
        num_classes: number of classes, bounding integer class indices.

    Example:
        >>> import torch
        >>> from lightning_xai.logic import Rule
        >>> metric = RuleAccuracy(Rule.from_string("c0 & ~c1", ["c0", "c1"], class_index=1))
        >>> metric.update(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([1, 0]))
        >>> metric.update(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0]))
        >>> metric.compute()
        tensor(0.7500)
    """


class RuleFidelity(_RuleAgreement):
    """Share of rows where a rule agrees with the model's predictions for its class.

    ``update(concepts, predictions)`` takes predicted class indices (``logits.argmax(1)``) or
    multilabel decisions (``logits > 0``). See
    :func:`~lightning_xai.metrics.functional.rule_fidelity`. Takes the arguments of
    :class:`RuleAccuracy`.

    Example:
        >>> import torch
        >>> from lightning_xai.logic import Rule
        >>> metric = RuleFidelity(Rule.from_string("c0", ["c0", "c1"]))
        >>> metric.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
        >>> metric.compute()
        tensor(1.)
    """

    _target_name = "predictions"


class RuleComplexity(Metric):
    """Mean number of literals over the rules passed to ``update``.

    See :func:`~lightning_xai.metrics.functional.rule_complexity`.

    Example:
        >>> from lightning_xai.logic import Rule
        >>> metric = RuleComplexity()
        >>> metric.update(Rule.from_string("(c0 & ~c1) | (~c0 & c1)", ["c0", "c1"]))
        >>> metric.update([Rule.from_string("c1", ["c0", "c1"])])
        >>> metric.compute()
        tensor(2.5000)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    literals: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("literals", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, rules: Rule | Sequence[Rule]) -> None:
        """Add one rule or several."""
        literals, count = _rule_complexity_update(rules)
        self.literals += literals.to(self.literals.device)
        self.count += count.to(self.count.device)

    def compute(self) -> Tensor:
        """Mean literals per rule (0 before any update)."""
        if int(self.count) == 0:
            return torch.zeros((), device=self.literals.device)
        return self.literals.float() / self.count
