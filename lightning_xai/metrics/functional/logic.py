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

from lightning_xai.logic.rule import Rule, check_concepts
from lightning_xai.utilities.tensor_checks import (
    check_binary_targets,
    check_class_indices,
    check_not_empty,
    check_tensor,
)

__all__ = ["rule_accuracy", "rule_complexity", "rule_fidelity"]


def _check_num_classes(rule: Rule, num_classes: int | None) -> None:
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2 or None, got {num_classes!r}; it bounds the "
            "class indices of the targets."
        )
    if rule.class_index >= num_classes:
        raise ValueError(
            f"`num_classes`={num_classes} has no class {rule.class_index}, the rule's "
            "`class_index`; pass the model's number of classes."
        )


def _membership(
    rule: Rule, target: Tensor, num_classes: int | None = None, name: str = "target"
) -> Tensor:
    """Whether each row belongs to the rule's class, from any of the accepted target layouts.

    Targets are checked first: class indices in ``[0, num_classes)`` (non-negative when
    ``num_classes`` is ``None``), memberships and multilabel targets finite and in [0, 1].
    """
    target = check_tensor(name, target)
    if target.dim() == 2:
        if rule.class_index >= target.shape[1]:
            raise ValueError(
                f"`{name}` has {target.shape[1]} columns (one per class), but the rule is for "
                f"class_index={rule.class_index}; pass (N, n_classes) targets or class indices."
            )
        check_binary_targets(name, target)
        column = target[:, rule.class_index]
        return column if column.dtype == torch.bool else column > 0.5
    if target.dim() != 1:
        raise ValueError(
            f"`{name}` must be class indices (N,), binary membership (N,) or multilabel "
            f"(N, n_classes), got shape {tuple(target.shape)}."
        )
    if target.dtype == torch.bool:
        return target
    if target.is_floating_point():
        check_binary_targets(name, target)
        return target > 0.5
    check_class_indices(name, target, num_classes)
    return target == rule.class_index


def _rule_agreement_update(
    rule: Rule,
    concepts: Tensor,
    target: Tensor,
    threshold: float | None = None,
    num_classes: int | None = None,
    name: str = "target",
) -> tuple[Tensor, Tensor]:
    """Rows where the rule agrees with ``target``, and the number of rows."""
    check_concepts("concepts", concepts, len(rule.concept_names))
    check_not_empty("concepts", concepts)
    check_tensor(name, target)
    if len(target) != len(concepts):
        raise ValueError(
            f"`concepts` has {len(concepts)} rows but `{name}` has {len(target)}; pass one "
            "target per row."
        )
    _check_num_classes(rule, num_classes)
    member = _membership(rule, target.detach(), num_classes, name)
    values = rule.evaluate(concepts.detach(), threshold)
    member = member.to(values.device)
    correct = (values == member).sum()
    return correct, torch.tensor(len(values), dtype=torch.long, device=correct.device)


def _rule_agreement_compute(correct: Tensor, total: Tensor) -> Tensor:
    """Share of agreeing rows; 0 when there were none."""
    if int(total) == 0:
        return torch.zeros((), dtype=torch.float32, device=correct.device)
    return (correct.double() / total).to(torch.float32)


def _rule_complexity_update(rules: Rule | Sequence[Rule]) -> tuple[Tensor, Tensor]:
    """Total literals and number of rules (at least one rule, every one a :class:`Rule`)."""
    rules = [rules] if isinstance(rules, Rule) else list(rules)
    if not rules:
        raise ValueError(
            "`rules` is empty; pass at least one Rule (a mean over none is undefined)."
        )
    for rule in rules:
        if not isinstance(rule, Rule):
            raise TypeError(
                f"`rules` must hold lightning_xai.logic.Rule objects, got {type(rule).__name__}."
            )
    literals = torch.tensor(sum(rule.complexity for rule in rules), dtype=torch.long)
    return literals, torch.tensor(len(rules), dtype=torch.long)


def rule_accuracy(
    rule: Rule,
    concepts: Tensor,
    target: Tensor,
    threshold: float | None = None,
    num_classes: int | None = None,
) -> Tensor:
    """Share of rows where ``rule`` agrees with the labels.

    Inputs are checked before anything is counted: concepts must be finite and in [0, 1],
    targets finite, in [0, 1] (memberships) or class indices in ``[0, num_classes)``, and the
    batch non-empty; a ``ValueError`` names the argument otherwise (a label outside the
    classes would silently count as "not this class").

    Args:
        rule: the rule; ``rule.class_index`` names its class.
        concepts: ``(N, D)`` concepts (Boolean, or numbers in [0, 1], true above ``threshold``).
        target: class indices ``(N,)`` (integer), binary membership of the rule's class
            ``(N,)`` (bool or float), or multilabel targets ``(N, n_classes)``.
        threshold: truth threshold of non-Boolean concepts (default: ``rule.threshold``).
        num_classes: number of classes, bounding integer class indices (``None``: only
            negative indices are rejected).

    Example:
        >>> import torch
        >>> from lightning_xai.logic import Rule
        >>> rule = Rule.from_string("c0 & ~c1", ["c0", "c1"], class_index=1)
        >>> concepts = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
        >>> rule_accuracy(rule, concepts, torch.tensor([1, 0, 0, 0]))
        tensor(0.7500)
    """
    return _rule_agreement_compute(
        *_rule_agreement_update(rule, concepts, target, threshold, num_classes)
    )


def rule_fidelity(
    rule: Rule,
    concepts: Tensor,
    predictions: Tensor,
    threshold: float | None = None,
    num_classes: int | None = None,
) -> Tensor:
    """Share of rows where ``rule`` agrees with the model's predictions.

    ``predictions`` take the layouts of :func:`rule_accuracy`'s ``target``: predicted class
    indices (``logits.argmax(1)``) or multilabel decisions (``logits > 0``), and are checked
    the same way.

    Example:
        >>> import torch
        >>> from lightning_xai.logic import Rule
        >>> rule = Rule.from_string("c0", ["c0", "c1"], class_index=0)
        >>> concepts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> rule_fidelity(rule, concepts, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor(1.)
    """
    return _rule_agreement_compute(
        *_rule_agreement_update(rule, concepts, predictions, threshold, num_classes, "predictions")
    )


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
