r"""Quality of logic rules: accuracy, fidelity to the model and complexity.

For a rule :math:`\varphi` for class :math:`k`, concepts :math:`c_n` and class membership
:math:`t_n` (labels) or :math:`\hat t_n` (model predictions):

.. math::

    \text{accuracy} = \frac{1}{N}\sum_n [\varphi(c_n) = t_n], \qquad
    \text{fidelity} = \frac{1}{N}\sum_n [\varphi(c_n) = \hat t_n],

and the complexity is the number of literals of :math:`\varphi`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_xai.logic.rule import Rule

__all__ = ["rule_accuracy", "rule_complexity", "rule_fidelity"]


def _membership(rule: Rule, target: Tensor) -> Tensor:
    """Whether each row belongs to the rule's class, from any of the accepted target layouts."""
    if target.dim() == 2:
        column = target[:, rule.class_index]
        return column if column.dtype == torch.bool else column > 0.5
    if target.dim() != 1:
        raise ValueError(
            f"`target` must be class indices (N,), binary membership (N,) or multilabel "
            f"(N, n_classes), got shape {tuple(target.shape)}."
        )
    if target.dtype == torch.bool:
        return target
    if target.is_floating_point():
        return target > 0.5
    return target == rule.class_index


def _rule_agreement_update(
    rule: Rule, concepts: Tensor, target: Tensor, threshold: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Rows where the rule agrees with ``target``, and the number of rows."""
    if len(target) != len(concepts):
        raise ValueError(
            f"`concepts` has {len(concepts)} rows but the target has {len(target)}; pass one "
            "target per row."
        )
    values = rule.evaluate(concepts.detach(), threshold)
    member = _membership(rule, target.detach()).to(values.device)
    correct = (values == member).sum()
    return correct, torch.tensor(len(values), dtype=torch.long, device=correct.device)


def _rule_agreement_compute(correct: Tensor, total: Tensor) -> Tensor:
    """Share of agreeing rows; 0 when there were none."""
    if int(total) == 0:
        return torch.zeros((), dtype=torch.float32, device=correct.device)
    return (correct.double() / total).to(torch.float32)


def _rule_complexity_update(rules: Rule | Sequence[Rule]) -> tuple[Tensor, Tensor]:
    """Total literals and number of rules."""
    rules = [rules] if isinstance(rules, Rule) else list(rules)
    literals = torch.tensor(sum(rule.complexity for rule in rules), dtype=torch.long)
    return literals, torch.tensor(len(rules), dtype=torch.long)


def rule_accuracy(rule: Rule, concepts: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """Share of rows where ``rule`` agrees with the labels.

    Args:
        rule: the rule; ``rule.class_index`` names its class.
        concepts: ``(N, D)`` concepts (Boolean, or true above ``threshold``).
        target: class indices ``(N,)`` (integer), binary membership of the rule's class
            ``(N,)`` (bool or float), or multilabel targets ``(N, n_classes)``.
        threshold: truth threshold of non-Boolean concepts.

    Example:
        >>> import torch
        >>> from lightning_xai.logic import Rule
        >>> rule = Rule.from_string("c0 & ~c1", ["c0", "c1"], class_index=1)
        >>> concepts = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
        >>> rule_accuracy(rule, concepts, torch.tensor([1, 0, 0, 0]))
        tensor(0.7500)
    """
    return _rule_agreement_compute(*_rule_agreement_update(rule, concepts, target, threshold))


def rule_fidelity(
    rule: Rule, concepts: Tensor, predictions: Tensor, threshold: float = 0.5
) -> Tensor:
    """Share of rows where ``rule`` agrees with the model's predictions.

    ``predictions`` take the layouts of :func:`rule_accuracy`'s ``target``: predicted class
    indices (``logits.argmax(1)``) or multilabel decisions (``logits > 0``).

    Example:
        >>> import torch
        >>> from lightning_xai.logic import Rule
        >>> rule = Rule.from_string("c0", ["c0", "c1"], class_index=0)
        >>> concepts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> rule_fidelity(rule, concepts, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor(1.)
    """
    return _rule_agreement_compute(*_rule_agreement_update(rule, concepts, predictions, threshold))


def rule_complexity(rules: Rule | Sequence[Rule]) -> Tensor:
    """Number of literals of a rule, or the mean over several rules.

    Example:
        >>> from lightning_xai.logic import Rule
        >>> names = ["c0", "c1", "c2"]
        >>> rule_complexity([Rule.from_string("c0 & ~c1", names), Rule.from_string("c2", names)])
        tensor(1.5000)
    """
    literals, count = _rule_complexity_update(rules)
    return literals.float() / count if int(count) else torch.zeros(())
