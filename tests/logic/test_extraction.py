"""Rule extraction recovers known DNFs exactly (checked by truth tables)."""

from __future__ import annotations

import pytest
import sympy
import torch
from torch import nn

from lightning_xai.data import random_dnf
from lightning_xai.logic import (
    ExtractionOptions,
    Rule,
    class_membership,
    concept_relevance,
    explain_class,
    extract_rules,
    parse_rule,
    simplify_rule_expr,
)
from lightning_xai.nn import EntropyLinear

NAMES = [f"c{j}" for j in range(12)]


def _data(truth: sympy.Basic, n: int = 3000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    concepts = torch.randint(0, 2, (n, len(NAMES)), generator=g).float()
    return concepts, Rule(truth, NAMES).evaluate(concepts)


def _oracle_relevance(truth: sympy.Basic, seed: int = 0) -> torch.Tensor:
    """Relevant concepts near 1, the others random below the threshold."""
    g = torch.Generator().manual_seed(seed)
    relevance = torch.rand(len(NAMES), generator=g) * 0.4
    for symbol in truth.free_symbols:
        relevance[NAMES.index(symbol.name)] = 0.8 + 0.2 * torch.rand((), generator=g)
    return relevance


@pytest.mark.parametrize(
    "text",
    [
        "(c0 & ~c1) | (~c0 & c1)",
        "(c0 & c1) | (c2 & ~c3)",
        "(c4 & ~c5 & c6) | c7",
        "(c8 & c9) | (~c10 & c11 & c3)",
        "c5",
        "~c2 & ~c7",
    ],
)
def test_recovers_known_dnf(text: str) -> None:
    truth = parse_rule(text, NAMES)
    concepts, target = _data(truth)
    rule = explain_class(concepts, target, _oracle_relevance(truth))
    assert rule.equivalent(truth), str(rule)
    assert rule.complexity == Rule(sympy.simplify_logic(truth, "dnf"), NAMES).complexity


@pytest.mark.parametrize("seed", range(4))
def test_recovers_random_dnfs(seed: int) -> None:
    truth = random_dnf(
        len(NAMES), n_terms=2, max_term_size=3, generator=torch.Generator().manual_seed(seed)
    )
    concepts, target = _data(truth, seed=seed)
    rule = explain_class(concepts, target, _oracle_relevance(truth, seed))
    assert rule.equivalent(truth), f"{rule} != {truth}"


def test_missing_relevant_concept_is_recovered_from_data() -> None:
    truth = parse_rule("(c0 & c1) | (~c2 & c3 & c4)", NAMES)
    concepts, target = _data(truth)
    relevance = _oracle_relevance(truth)
    relevance[3] = 0.05  # the relevance mask misses c3 entirely
    assert not relevance[3] > 0.5
    rule = explain_class(concepts, target, relevance)
    assert rule.equivalent(truth), str(rule)


def test_label_noise_on_disagreeing_rows_is_ignored() -> None:
    truth = parse_rule("(c0 & c1) | c2", NAMES)
    concepts, clean = _data(truth)
    g = torch.Generator().manual_seed(1)
    noisy = clean ^ (torch.rand(len(clean), generator=g) < 0.15)
    # the model got the clean function: rows with flipped labels disagree with it
    rule = explain_class(concepts, noisy, _oracle_relevance(truth), predictions=clean)
    assert rule.equivalent(truth), str(rule)


def test_no_positive_rows_gives_false_and_all_positive_gives_true() -> None:
    concepts = torch.randint(0, 2, (50, 3)).float()
    relevance = torch.ones(3)
    assert explain_class(concepts, torch.zeros(50, dtype=torch.bool), relevance).expr == sympy.false
    assert explain_class(concepts, torch.ones(50, dtype=torch.bool), relevance).expr == sympy.true


def _logic_linear() -> nn.Linear:
    """Multilabel logits whose decisions are exactly c0 & c1 and c2 | c3."""
    model = nn.Linear(5, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0, 0, 0, 0], [0, 0, 1.0, 1.0, 0]]))
        model.bias.copy_(torch.tensor([-1.5, -0.5]))
    return model


def test_extract_rules_explains_a_model_exactly() -> None:
    model = _logic_linear()
    concepts = torch.randint(0, 2, (200, 5)).float()
    rules = extract_rules(
        model, concepts, task="multilabel", concept_names=list("abcde"), class_names=["and", "or"]
    )
    assert [r.class_name for r in rules] == ["and", "or"]
    assert rules[0].equivalent(parse_rule("a & b", "abcde"))
    assert rules[1].equivalent(parse_rule("c | d", "abcde"))
    assert rules[0].accuracy is None  # metrics are attached by the caller


def test_extract_rules_multiclass_targets_and_model_left_in_train_mode() -> None:
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)).train()
    concepts = torch.randint(0, 2, (64, 2)).float()
    rules = extract_rules(model, concepts, concepts[:, 0].long(), task="multiclass")
    assert len(rules) == 2 and model.training


def test_concept_relevance_of_nested_entropy_layer_and_of_mlp() -> None:
    nested = nn.Sequential(nn.Sequential(EntropyLinear(4, 3, n_classes=2)), nn.Linear(3, 1))
    layer = nested[0][0]
    torch.testing.assert_close(concept_relevance(nested), layer.normalized_relevance().detach())
    relevance = concept_relevance(_logic_linear())
    torch.testing.assert_close(relevance, torch.tensor([[1.0, 1, 0, 0, 0], [0, 0, 1, 1, 0]]))
    with pytest.raises(ValueError, match="do not form a chain"):
        concept_relevance(nn.ModuleList([nn.Linear(3, 4), nn.Linear(5, 1)]))
    with pytest.raises(ValueError, match="no EntropyLinear or nn.Linear"):
        concept_relevance(nn.ReLU())


def test_simplification_guards() -> None:
    s = sympy.symbols("s0:10")
    redundant = sympy.Or(sympy.And(s[0], s[1]), sympy.And(s[0], ~s[1]))
    assert simplify_rule_expr(redundant) == s[0]
    wide = sympy.Or(*[sympy.And(s[i], s[i + 1]) for i in range(9)]) | sympy.And(s[0], ~s[0] | s[1])
    assert simplify_rule_expr(wide, max_symbols=8) == wide  # too many symbols: untouched
    assert simplify_rule_expr(redundant, max_literals=3) == redundant
    eight = sympy.Or(*[sympy.And(s[i], ~s[(i + 3) % 8], s[(i + 5) % 8]) for i in range(8)])
    fast = simplify_rule_expr(eight, timeout=1e-6)  # no time to finish: the input comes back
    assert fast == eight
    with pytest.raises(ValueError, match="timeout"):
        simplify_rule_expr(eight, timeout=0)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"relevance_threshold": 1.0}, ValueError),
        ({"max_concepts": 0}, ValueError),
        ({"max_concepts": 31}, ValueError),
        ({"max_concepts": 2.0}, TypeError),
        ({"min_concept_gain": -0.1}, ValueError),
        ({"simplify_timeout": 0.0}, ValueError),
    ],
)
def test_invalid_options(kwargs: dict, error: type) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        ExtractionOptions(**kwargs)


def test_max_concepts_caps_the_rule() -> None:
    truth = parse_rule("c0 & c1 & c2 & c3", NAMES)
    concepts, target = _data(truth)
    rule = explain_class(
        concepts, target, _oracle_relevance(truth), options=ExtractionOptions(max_concepts=2)
    )
    assert len(rule.expr.free_symbols) <= 2


def test_class_membership_layouts_and_errors() -> None:
    assert class_membership(torch.tensor([[0.2, 3.0]]), "multiclass", 2, logits=True).tolist() == [
        [False, True]
    ]
    assert class_membership(torch.tensor([[0.7, 0.2]]), "multilabel", 2).tolist() == [[True, False]]
    assert class_membership(torch.tensor([[-1.0, 0.5]]), "multilabel", 2, logits=True).tolist() == [
        [False, True]
    ]
    with pytest.raises(ValueError, match="task"):
        class_membership(torch.zeros(2), "binary", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="class indices"):
        class_membership(torch.zeros(2), "multiclass", 2)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        class_membership(torch.zeros(2, 2), "multilabel", 3)
