"""Rule metrics against a brute-force reference, metric classes against their functional twins."""

from __future__ import annotations

import pytest
import sympy
import torch

from lightning_xai.logic import Rule
from lightning_xai.metrics import RuleAccuracy, RuleComplexity, RuleFidelity
from lightning_xai.metrics.functional import rule_accuracy, rule_complexity, rule_fidelity

NAMES = ["c0", "c1", "c2", "c3"]


def _reference_accuracy(rule: Rule, concepts: torch.Tensor, member: list[bool]) -> float:
    symbols = [sympy.Symbol(n) for n in NAMES]
    hits = 0
    for row, truth in zip(concepts.tolist(), member):
        value = bool(rule.expr.subs({s: v > 0.5 for s, v in zip(symbols, row)}))
        hits += value == truth
    return hits / len(member)


@pytest.fixture
def data() -> tuple[Rule, torch.Tensor, torch.Tensor]:
    rule = Rule.from_string("(c0 & ~c1) | c3", NAMES, class_index=1)
    concepts = torch.rand(60, 4)
    labels = torch.randint(0, 3, (60,))
    return rule, concepts, labels


def test_accuracy_matches_reference_for_every_target_layout(data: tuple) -> None:
    rule, concepts, labels = data
    member = (labels == 1).tolist()
    expected = _reference_accuracy(rule, concepts, member)
    one_hot = torch.nn.functional.one_hot(labels, 3)
    for target in (labels, labels == 1, (labels == 1).float(), one_hot, one_hot.bool()):
        assert float(rule_accuracy(rule, concepts, target)) == pytest.approx(expected)


def test_fidelity_compares_with_predictions(data: tuple) -> None:
    rule, concepts, _ = data
    predictions = rule.evaluate(concepts).long()  # a model that follows the rule exactly
    assert float(rule_fidelity(rule, concepts, predictions)) == 1.0
    flipped = 1 - predictions
    assert float(rule_fidelity(rule, concepts, flipped)) == 0.0


def test_metric_classes_accumulate_like_the_functional_twins(data: tuple) -> None:
    rule, concepts, labels = data
    accuracy, fidelity = RuleAccuracy(rule), RuleFidelity(rule)
    predictions = torch.randint(0, 3, (60,))
    for chunk in range(0, 60, 25):
        accuracy.update(concepts[chunk : chunk + 25], labels[chunk : chunk + 25])
        fidelity.update(concepts[chunk : chunk + 25], predictions[chunk : chunk + 25])
    torch.testing.assert_close(accuracy.compute(), rule_accuracy(rule, concepts, labels))
    torch.testing.assert_close(fidelity.compute(), rule_fidelity(rule, concepts, predictions))
    accuracy.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert float(accuracy.compute()) == 0.0


def test_complexity_counts_literals() -> None:
    rules = [
        Rule.from_string("(c0 & ~c1) | (~c0 & c1)", NAMES),
        Rule.from_string("c2", NAMES),
        Rule(sympy.false, NAMES),
    ]
    assert float(rule_complexity(rules[0])) == 4.0
    assert float(rule_complexity(rules)) == pytest.approx(5 / 3)
    metric = RuleComplexity()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert float(metric.compute()) == 0.0
    metric.update(rules[0])
    metric.update(rules[1:])
    torch.testing.assert_close(metric.compute(), rule_complexity(rules))


def test_errors(data: tuple) -> None:
    rule, concepts, labels = data
    with pytest.raises(ValueError, match="rows"):
        rule_accuracy(rule, concepts, labels[:10])
    with pytest.raises(ValueError, match="shape"):
        rule_accuracy(rule, concepts, labels.reshape(60, 1, 1))
    with pytest.raises(TypeError, match="Rule"):
        RuleAccuracy("c0")  # type: ignore[arg-type]
