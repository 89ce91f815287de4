"""Degenerate input to every logic entry point (rule evaluation, extraction, the logic
explainer modules): NaN concepts, concepts outside [0, 1], labels outside the class range and
empty batches end in a clear error naming the argument, never in rules with plausible scores."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from lightning_xai.logic import (
    ExtractionOptions,
    Rule,
    class_membership,
    concept_relevance,
    explain_class,
    extract_rules,
    rules_to_markdown,
)
from lightning_xai.modules.logic_explainer import LogicExplainer, MLPLogicExplainer

NAN, INF = float("nan"), float("inf")
NAMES = ["c0", "c1", "c2"]
RULE = Rule.from_string("c0 & ~c1", NAMES, class_index=1)


def _concepts(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2, (n, 3), generator=torch.Generator().manual_seed(seed)).float()


def _xor_labels(c: torch.Tensor) -> torch.Tensor:
    return (c[:, 0] != c[:, 1]).long()


def _with(value: float, row: int = 3, col: int = 1, n: int = 16) -> torch.Tensor:
    c = _concepts(n)
    c[row, col] = value
    return c


def _explainer(task: str = "multiclass") -> LogicExplainer:
    torch.manual_seed(0)
    return LogicExplainer(n_concepts=3, n_classes=2, task=task)


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _nan_linear() -> nn.Module:
    model = _linear()
    with torch.no_grad():
        model.weight[0, 1] = NAN
    return model


C = _concepts()
Y = _xor_labels(C)

# (entry point, call, error type, words the message must contain)
TABLE: list[tuple[str, Any, type[Exception], tuple[str, ...]]] = [
    # ------------------------------------------------------------------ Rule.evaluate
    (
        "Rule.evaluate",
        lambda: RULE.evaluate(_with(NAN)),
        ValueError,
        ("`concepts`", "NaN", "row 3"),
    ),
    ("Rule.evaluate", lambda: RULE.evaluate(_with(INF)), ValueError, ("`concepts`", "inf")),
    (
        "Rule.evaluate",
        lambda: RULE.evaluate(_with(1.5)),
        ValueError,
        ("`concepts`", "[0, 1]", "1.5"),
    ),
    (
        "Rule.evaluate",
        lambda: RULE.evaluate(_with(-0.2)),
        ValueError,
        ("`concepts`", "[0, 1]", "-0.2"),
    ),
    (
        "Rule.evaluate",
        lambda: RULE.evaluate(torch.full((2, 3), 2)),
        ValueError,
        ("`concepts`", "2"),
    ),
    ("Rule.evaluate", lambda: RULE.evaluate(C, threshold=NAN), ValueError, ("`threshold`", "nan")),
    ("Rule.evaluate", lambda: RULE.evaluate(C, threshold=1.0), ValueError, ("`threshold`", "1.0")),
    ("Rule.evaluate", lambda: RULE.evaluate(C[:, :2]), ValueError, ("`concepts`", "(16, 2)")),
    ("Rule", lambda: Rule(RULE.expr, NAMES, threshold=NAN), ValueError, ("`threshold`", "nan")),
    # ------------------------------------------------------------------ class_membership
    (
        "class_membership",
        lambda: class_membership(torch.tensor([0, 2]), "multiclass", 2),
        ValueError,
        ("`values`", "2", "[0, 1]"),
    ),
    (
        "class_membership",
        lambda: class_membership(torch.tensor([-1, 0]), "multiclass", 2),
        ValueError,
        ("`values`", "-1"),
    ),
    (
        "class_membership",
        lambda: class_membership(torch.tensor([[0.0, NAN]]), "multilabel", 2),
        ValueError,
        ("`values`", "NaN"),
    ),
    (
        "class_membership",
        lambda: class_membership(torch.tensor([[0.0, 2.0]]), "multilabel", 2),
        ValueError,
        ("`values`", "[0, 1]", "2.0"),
    ),
    (
        "class_membership",
        lambda: class_membership(torch.tensor([[0.0, NAN]]), "multiclass", 2, logits=True),
        ValueError,
        ("`values`", "NaN"),
    ),
    # ------------------------------------------------------------------ explain_class
    (
        "explain_class",
        lambda: explain_class(_with(NAN), Y.bool(), torch.ones(3)),
        ValueError,
        ("`concepts`", "NaN"),
    ),
    (
        "explain_class",
        lambda: explain_class(_with(3.0), Y.bool(), torch.ones(3)),
        ValueError,
        ("`concepts`", "3.0"),
    ),
    (
        "explain_class",
        lambda: explain_class(C[:0], Y[:0].bool(), torch.ones(3)),
        ValueError,
        ("`concepts`", "empty"),
    ),
    (
        "explain_class",
        lambda: explain_class(C, Y.bool(), torch.tensor([1.0, NAN, 0.2])),
        ValueError,
        ("`relevance`", "NaN"),
    ),
    (
        "explain_class",
        lambda: explain_class(C, Y.bool(), torch.tensor([1.0, -1.0, 0.2])),
        ValueError,
        ("`relevance`", "-1.0"),
    ),
    (
        "explain_class",
        lambda: explain_class(C, Y[:5].bool(), torch.ones(3)),
        ValueError,
        ("`target`", "5"),
    ),
    # ------------------------------------------------------------------ extract_rules
    (
        "extract_rules",
        lambda: extract_rules(_linear(), _with(NAN), Y),
        ValueError,
        ("`concepts`", "NaN"),
    ),
    (
        "extract_rules",
        lambda: extract_rules(_linear(), _with(1.5), Y),
        ValueError,
        ("`concepts`", "1.5"),
    ),
    (
        "extract_rules",
        lambda: extract_rules(_linear(), C, Y + 5),
        ValueError,
        ("`target`", "[0, 1]"),
    ),
    ("extract_rules", lambda: extract_rules(_linear(), C, Y - 1), ValueError, ("`target`", "-1")),
    (
        "extract_rules",
        lambda: extract_rules(_linear(), C[:0], Y[:0]),
        ValueError,
        ("`concepts`", "empty"),
    ),
    ("extract_rules", lambda: extract_rules(_linear(), C, Y[:4]), ValueError, ("`target`", "4")),
    ("extract_rules", lambda: extract_rules(_nan_linear(), C, Y), ValueError, ("`model`", "NaN")),
    (
        "extract_rules",
        lambda: extract_rules(_linear(), C, task="binary"),
        ValueError,
        ("`task`", "'binary'"),
    ),
    ("concept_relevance", lambda: concept_relevance(_nan_linear()), ValueError, ("`model`", "NaN")),
    # ------------------------------------------------------------------ LogicExplainer.explain
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(_with(NAN), Y),
        ValueError,
        ("`x`", "NaN", "row 3"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(_with(1.5), Y),
        ValueError,
        ("`x`", "[0, 1]"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(C, Y + 5),
        ValueError,
        ("`y`", "[0, 1]", "up to 6"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(C, Y.float()),
        ValueError,
        ("`y`", "float"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(C[:0], Y[:0]),
        ValueError,
        ("`x`", "empty"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(C[:, :2], Y),
        ValueError,
        ("`x`", "(16, 2)"),
    ),
    ("LogicExplainer.explain", lambda: _explainer().explain(C, Y[:3]), ValueError, ("`y`", "3")),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(C, Y, eval_x=_with(NAN)),
        ValueError,
        ("`eval_x`", "NaN"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(C, Y, eval_x=C, eval_y=Y + 2),
        ValueError,
        ("`eval_y`", "2"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer().explain(C, Y, eval_y=Y),
        ValueError,
        ("`eval_y`", "`eval_x`"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer("multilabel").explain(C, torch.full((16, 2), NAN)),
        ValueError,
        ("`y`", "NaN"),
    ),
    (
        "LogicExplainer.explain",
        lambda: _explainer("multilabel").explain(C, torch.full((16, 2), 2.0)),
        ValueError,
        ("`y`", "[0, 1]"),
    ),
    (
        "MLPLogicExplainer.explain",
        lambda: MLPLogicExplainer(3, 2).explain(_with(-1.0), Y),
        ValueError,
        ("`x`", "-1.0"),
    ),
]


@pytest.mark.parametrize(
    ("entry", "call", "error", "words"),
    TABLE,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(TABLE)],
)
def test_degenerate_logic_input_is_named(entry: str, call: Any, error: type, words: tuple) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{entry}: {word!r} missing from {message!r}"


def test_nan_concepts_used_to_give_plausible_rules() -> None:
    """The issue's case: NaN concepts gave rules of accuracy 0.75 and fidelity 1.0. Every entry
    on the way now refuses them; no rule comes back."""
    module = _explainer()
    x = _concepts(64)
    y = _xor_labels(x)
    x[::4, 0] = NAN  # a quarter of the rows
    with pytest.raises(ValueError, match=r"`x` holds NaN or inf in 16 of 64 rows, first at row 0"):
        module.explain(x, y)


def test_out_of_range_labels_used_to_score_one() -> None:
    """Labels of a class the model does not have gave rules of accuracy 1.0."""
    module = _explainer()
    x = _concepts(32)
    with pytest.raises(ValueError, match=r"`y` holds class indices up to 7"):
        module.explain(x, torch.full((32,), 7))


def test_soft_concepts_inside_the_unit_interval_are_thresholded_and_stated() -> None:
    soft = torch.tensor([[0.7, 0.2, 0.0], [0.3, 0.9, 1.0], [0.51, 0.49, 0.5]])
    assert RULE.evaluate(soft).tolist() == [True, False, True]
    strict = Rule(RULE.expr, NAMES, class_index=1, threshold=0.6)
    assert strict.evaluate(soft).tolist() == [True, False, False]
    assert "threshold=0.6" in repr(strict)
    assert Rule.from_dict(strict.to_dict()).threshold == 0.6
    table = rules_to_markdown([strict])
    assert "true above 0.6" in table
    rules = extract_rules(
        _linear(), _concepts(32), options=ExtractionOptions(concept_threshold=0.3)
    )
    assert {rule.threshold for rule in rules} == {0.3}


def test_relevance_of_a_class_with_no_weights_warns() -> None:
    model = _linear()
    with torch.no_grad():
        model.weight[1] = 0.0
    with pytest.warns(UserWarning, match=r"class 1 .*zero relevance for every concept"):
        relevance = concept_relevance(model)
    assert torch.equal(relevance[1], torch.zeros(3))


def test_clean_input_gives_no_warning() -> None:
    module = _explainer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rules = module.explain(C, Y)
    assert len(rules) == 2 and all(0.0 <= r.accuracy <= 1.0 for r in rules)
