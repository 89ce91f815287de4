"""Degenerate input to the logic, consistency and right-reasons metrics (functional and
``Metric`` twins): NaN, empty, out-of-range and constant input end in a clear error naming the
argument, or in a warning naming it where the value is defined but uninformative; none ends in a
plausible number."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lightning_xai.logic import Rule
from lightning_xai.metrics.consistency import ExampleConsistency, FeatureConsistency
from lightning_xai.metrics.functional.consistency import example_consistency, feature_consistency
from lightning_xai.metrics.functional.logic import rule_accuracy, rule_complexity, rule_fidelity
from lightning_xai.metrics.functional.right_reasons import right_reasons_score
from lightning_xai.metrics.logic import RuleAccuracy, RuleComplexity, RuleFidelity
from lightning_xai.metrics.right_reasons import RightReasonsScore

NAN, INF = float("nan"), float("inf")
NAMES = ["c0", "c1"]
RULE = Rule.from_string("c0 & ~c1", NAMES, class_index=1)
C = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
Y = torch.tensor([1, 0, 0, 1])


def _nan_c() -> torch.Tensor:
    c = C.clone()
    c[2, 0] = NAN
    return c


def _encoder(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)[:, :2] * 10


def _nan_encoder(x: torch.Tensor) -> torch.Tensor:
    return torch.full((len(x), 2), NAN)


X = torch.rand(6, 8, generator=torch.Generator().manual_seed(0))
A = torch.arange(8.0).expand(6, 8)


def _with_nan(t: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
    t = t.clone()
    t[index] = NAN
    return t


SCORES = torch.tensor([[0.9, 0.1, 0.8], [0.2, 0.7, 0.6]])
TEST_Y, TRAIN_Y = torch.tensor([0, 1]), torch.tensor([0, 1, 1])
GRADS = torch.tensor([[3.0, -1.0], [1.0, 1.0]])
MASK = torch.tensor([[True, False], [False, True]])

# (entry point, call, error type, words the message must contain)
TABLE: list[tuple[str, Any, type[Exception], tuple[str, ...]]] = [
    # ------------------------------------------------------------------ rule accuracy / fidelity
    ("rule_accuracy", lambda: rule_accuracy(RULE, _nan_c(), Y), ValueError, ("`concepts`", "NaN")),
    ("rule_accuracy", lambda: rule_accuracy(RULE, C * 2, Y), ValueError, ("`concepts`", "[0, 1]")),
    (
        "rule_accuracy",
        lambda: rule_accuracy(RULE, C[:0], Y[:0]),
        ValueError,
        ("`concepts`", "empty"),
    ),
    ("rule_accuracy", lambda: rule_accuracy(RULE, C, Y - 3), ValueError, ("`target`", "-3")),
    (
        "rule_accuracy",
        lambda: rule_accuracy(RULE, C, Y + 2, num_classes=2),
        ValueError,
        ("`target`", "3", "[0, 1]"),
    ),
    (
        "rule_accuracy",
        lambda: rule_accuracy(RULE, C, torch.tensor([1.0, NAN, 0.0, 1.0])),
        ValueError,
        ("`target`", "NaN"),
    ),
    (
        "rule_accuracy",
        lambda: rule_accuracy(RULE, C, torch.tensor([1.0, 2.0, 0.0, 1.0])),
        ValueError,
        ("`target`", "[0, 1]"),
    ),
    (
        "rule_accuracy",
        lambda: rule_accuracy(RULE, C, torch.zeros(4, 1)),
        ValueError,
        ("`target`", "class_index=1"),
    ),
    (
        "rule_accuracy",
        lambda: rule_accuracy(RULE, C, Y, threshold=NAN),
        ValueError,
        ("`threshold`", "nan"),
    ),
    ("rule_accuracy", lambda: rule_accuracy(RULE, C, Y[:3]), ValueError, ("`concepts`", "4", "3")),
    ("rule_fidelity", lambda: rule_fidelity(RULE, _nan_c(), Y), ValueError, ("`concepts`", "NaN")),
    (
        "rule_fidelity",
        lambda: rule_fidelity(RULE, C, torch.tensor([[0.0, INF]] * 4)),
        ValueError,
        ("`predictions`", "inf"),
    ),
    (
        "RuleAccuracy.update",
        lambda: RuleAccuracy(RULE).update(_nan_c(), Y),
        ValueError,
        ("`concepts`", "NaN"),
    ),
    (
        "RuleAccuracy.update",
        lambda: RuleAccuracy(RULE, num_classes=2).update(C, Y + 4),
        ValueError,
        ("`target`", "5"),
    ),
    (
        "RuleAccuracy.update",
        lambda: RuleAccuracy(RULE).update(C[:0], Y[:0]),
        ValueError,
        ("`concepts`", "empty"),
    ),
    (
        "RuleFidelity.update",
        lambda: RuleFidelity(RULE).update(C, -Y - 1),
        ValueError,
        ("`predictions`", "-2"),
    ),
    ("rule_complexity", lambda: rule_complexity([]), ValueError, ("`rules`", "empty")),
    ("rule_complexity", lambda: rule_complexity(["c0 & c1"]), TypeError, ("`rules`", "str")),
    (
        "RuleComplexity.update",
        lambda: RuleComplexity().update([]),
        ValueError,
        ("`rules`", "empty"),
    ),
    # ------------------------------------------------------------------ feature consistency
    (
        "feature_consistency",
        lambda: feature_consistency(_encoder, _with_nan(X, (1, 2)), A, k=2),
        ValueError,
        ("`inputs`", "NaN", "row 1"),
    ),
    (
        "feature_consistency",
        lambda: feature_consistency(_encoder, X, _with_nan(A, (4, 0)), k=2),
        ValueError,
        ("`attributions`", "NaN", "row 4"),
    ),
    (
        "feature_consistency",
        lambda: feature_consistency(_encoder, X[:0], A[:0], k=2),
        ValueError,
        ("`inputs`", "empty"),
    ),
    (
        "feature_consistency",
        lambda: feature_consistency(_nan_encoder, X, A, k=2),
        ValueError,
        ("`encoder`", "NaN"),
    ),
    (
        "feature_consistency",
        lambda: feature_consistency(_encoder, X, A, k=2, baseline=NAN),
        ValueError,
        ("`baseline`", "nan"),
    ),
    (
        "feature_consistency",
        lambda: feature_consistency(_encoder, X, A, k=2, baseline=torch.full((8,), INF)),
        ValueError,
        ("`baseline`", "inf"),
    ),
    (
        "feature_consistency",
        lambda: feature_consistency(_encoder, X, A, k=9),
        ValueError,
        ("`k`", "9"),
    ),
    (
        "feature_consistency",
        lambda: feature_consistency(_encoder, X, A[:, :4], k=2),
        ValueError,
        ("`attributions`", "(6, 4)"),
    ),
    (
        "FeatureConsistency.update",
        lambda: FeatureConsistency(_encoder, k=2).update(_with_nan(X, (0, 0)), A),
        ValueError,
        ("`inputs`", "NaN"),
    ),
    (
        "FeatureConsistency.update",
        lambda: FeatureConsistency(_encoder, k=2).update(X[:0], A[:0]),
        ValueError,
        ("`inputs`", "empty"),
    ),
    (
        "FeatureConsistency.update",
        lambda: FeatureConsistency(_nan_encoder, k=2).update(X, A),
        ValueError,
        ("`encoder`", "NaN"),
    ),
    # ------------------------------------------------------------------ example consistency
    (
        "example_consistency",
        lambda: example_consistency(_with_nan(SCORES, (1, 1)), TEST_Y, TRAIN_Y, k=2),
        ValueError,
        ("`preds`", "NaN", "row 1"),
    ),
    (
        "example_consistency",
        lambda: example_consistency(SCORES[:0], TEST_Y[:0], TRAIN_Y, k=2),
        ValueError,
        ("`preds`", "empty"),
    ),
    (
        "example_consistency",
        lambda: example_consistency(SCORES, TEST_Y, TRAIN_Y[:0], k=2),
        ValueError,
        ("`train_labels`", "empty"),
    ),
    (
        "example_consistency",
        lambda: example_consistency(torch.tensor([[0, -1], [1, 2]]), TEST_Y, TRAIN_Y, k=2),
        ValueError,
        ("`preds`", "-1", "[0, 2]"),
    ),
    (
        "example_consistency",
        lambda: example_consistency(torch.tensor([[0, 3], [1, 2]]), TEST_Y, TRAIN_Y, k=2),
        ValueError,
        ("`preds`", "3", "[0, 2]"),
    ),
    (
        "example_consistency",
        lambda: example_consistency(SCORES, torch.tensor([0.0, NAN]), TRAIN_Y, k=2),
        ValueError,
        ("`test_labels`", "NaN"),
    ),
    (
        "example_consistency",
        lambda: example_consistency(SCORES, TEST_Y, torch.tensor([0.0, NAN, 1.0]), k=2),
        ValueError,
        ("`train_labels`", "NaN"),
    ),
    (
        "example_consistency",
        lambda: example_consistency(SCORES, TEST_Y, TRAIN_Y, k=4),
        ValueError,
        ("`k`", "4"),
    ),
    (
        "ExampleConsistency.update",
        lambda: ExampleConsistency(k=2).update(_with_nan(SCORES, (0, 0)), TEST_Y, TRAIN_Y),
        ValueError,
        ("`preds`", "NaN"),
    ),
    (
        "ExampleConsistency.update",
        lambda: ExampleConsistency(k=2).update(torch.tensor([[0, 5], [1, 2]]), TEST_Y, TRAIN_Y),
        ValueError,
        ("`preds`", "5"),
    ),
    # ------------------------------------------------------------------ right-reasons score
    (
        "right_reasons_score",
        lambda: right_reasons_score(_with_nan(GRADS, (1, 0)), MASK),
        ValueError,
        ("`input_gradients`", "NaN", "row 1"),
    ),
    (
        "right_reasons_score",
        lambda: right_reasons_score(GRADS, torch.tensor([[NAN, 0.0], [0.0, 1.0]])),
        ValueError,
        ("`mask`", "NaN"),
    ),
    (
        "right_reasons_score",
        lambda: right_reasons_score(GRADS, torch.tensor([[2.0, 0.0], [0.0, 1.0]])),
        ValueError,
        ("`mask`", "[0, 1]", "2.0"),
    ),
    (
        "right_reasons_score",
        lambda: right_reasons_score(GRADS[:0], MASK[:0]),
        ValueError,
        ("`input_gradients`", "empty"),
    ),
    (
        "right_reasons_score",
        lambda: right_reasons_score(GRADS, MASK[:, :1].long()),
        TypeError,
        ("`mask`", "int64"),
    ),
    (
        "RightReasonsScore.update",
        lambda: RightReasonsScore().update(_with_nan(GRADS, (0, 1)), MASK),
        ValueError,
        ("`input_gradients`", "NaN"),
    ),
    (
        "RightReasonsScore.update",
        lambda: RightReasonsScore().update(GRADS[:0], MASK[:0]),
        ValueError,
        ("`input_gradients`", "empty"),
    ),
]


@pytest.mark.parametrize(
    ("entry", "call", "error", "words"),
    TABLE,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(TABLE)],
)
def test_degenerate_metric_input_is_named(entry: str, call: Any, error: type, words: tuple) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{entry}: {word!r} missing from {message!r}"


def test_constant_encoder_warns_instead_of_a_silent_nan_ratio() -> None:
    """A representation that no masking moves gives no ratio: a warning names it."""
    with pytest.warns(UserWarning, match=r"random_shift.*is 0"):
        out = feature_consistency(lambda x: torch.zeros(len(x), 2), X, A, k=2)
    assert torch.isnan(out["ratio"]) and float(out["random_shift"]) == 0.0


def test_zero_gradients_warn_instead_of_a_silent_perfect_score() -> None:
    """A sample without gradient (a saturated model) scores 0, which reads as perfect: warn."""
    grads = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    with pytest.warns(UserWarning, match=r"1 of 2 samples have zero `input_gradients`"):
        score = right_reasons_score(grads, MASK)
    assert float(score) == pytest.approx(0.25)


def test_metrics_on_clean_input_agree_with_brute_force() -> None:
    rule_values = [bool(r[0] > 0.5 and not r[1] > 0.5) for r in C.tolist()]
    brute = sum(v == (y == 1) for v, y in zip(rule_values, Y.tolist())) / 4
    assert float(rule_accuracy(RULE, C, Y, num_classes=2)) == pytest.approx(brute)
    metric = RuleAccuracy(RULE, num_classes=2)
    metric.update(C[:2], Y[:2])
    metric.update(C[2:], Y[2:])
    assert float(metric.compute()) == pytest.approx(brute)
