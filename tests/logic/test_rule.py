"""Rules: vectorised evaluation against sympy's per-row substitution, printing, round trips."""

from __future__ import annotations

import random

import pytest
import sympy
import torch

from lightning_xai.logic import (
    Rule,
    count_literals,
    equivalent,
    parse_rule,
    rules_to_markdown,
    truth_table,
)


def _random_expr(symbols: list[sympy.Symbol], rng: random.Random, depth: int = 3) -> sympy.Basic:
    if depth == 0 or rng.random() < 0.25:
        symbol = rng.choice(symbols)
        return symbol if rng.random() < 0.5 else ~symbol
    op = rng.choice([sympy.And, sympy.Or, sympy.Xor, sympy.Implies, sympy.Not])
    if op is sympy.Not:
        return ~_random_expr(symbols, rng, depth - 1)
    if op is sympy.Implies:
        return sympy.Implies(_random_expr(symbols, rng, depth - 1), _random_expr(symbols, rng, 0))
    return op(*[_random_expr(symbols, rng, depth - 1) for _ in range(rng.randint(2, 3))])


def _brute_force(rule: Rule, concepts: torch.Tensor) -> torch.Tensor:
    """The slow reference: sympy substitution, one row at a time."""
    symbols = [sympy.Symbol(name) for name in rule.concept_names]
    rows = []
    for row in concepts.tolist():
        value = rule.expr.subs({s: bool(v > 0.5) for s, v in zip(symbols, row)})
        rows.append(bool(value))
    return torch.tensor(rows)


@pytest.mark.parametrize("n_concepts", [4, 20])  # truth-table path and tree path (> 16 symbols)
def test_evaluate_matches_sympy_substitution(n_concepts: int) -> None:
    rng = random.Random(n_concepts)
    names = [f"c{j}" for j in range(n_concepts)]
    symbols = [sympy.Symbol(name) for name in names]
    concepts = torch.randint(0, 2, (40, n_concepts)).float()
    checked = 0
    for _ in range(15):
        expr = _random_expr(symbols, rng)
        if n_concepts > 16:  # make sure the large-rule path runs
            expr = sympy.Or(expr, sympy.And(*symbols[: n_concepts - 1]))
        rule = Rule(expr, names)
        assert torch.equal(rule.evaluate(concepts), _brute_force(rule, concepts))
        checked += 1
    assert checked == 15


def test_evaluate_thresholds_soft_concepts_and_accepts_bool() -> None:
    rule = Rule.from_string("a & ~b", ["a", "b"])
    soft = torch.tensor([[0.9, 0.2], [0.4, 0.1], [0.7, 0.6]])
    assert rule.evaluate(soft).tolist() == [True, False, False]
    assert rule.evaluate(soft, threshold=0.3).tolist() == [True, True, False]
    assert rule.evaluate(soft > 0.5).tolist() == [True, False, False]


def test_constant_rules() -> None:
    names = ["a"]
    concepts = torch.tensor([[0.0], [1.0]])
    assert Rule(sympy.true, names).evaluate(concepts).tolist() == [True, True]
    assert Rule(sympy.false, names).evaluate(concepts).tolist() == [False, False]
    assert Rule(sympy.false, names).complexity == 0


def test_truth_table_bit_order() -> None:
    a, b = sympy.symbols("a b")
    assert truth_table(a & ~b, [a, b]).tolist() == [False, True, False, False]


def test_forms_and_complexity() -> None:
    rule = Rule.from_string("(c10 & ~c2) | c1", ["c1", "c2", "c10"], class_index=2)
    assert rule.class_name == "y2"
    assert rule.complexity == 3
    assert str(rule) == "c1 | (~c2 & c10)"  # shorter terms first, literals in column order
    assert rule.to_markdown() == "c1 ∨ (¬c2 ∧ c10)"
    assert "\\neg" in rule.to_latex() and "\\vee" in rule.to_latex()
    assert count_literals(parse_rule("a ^ (a & b)", ["a", "b"])) == 3


def test_markdown_escapes_pipes_in_names() -> None:
    rule = Rule(sympy.Symbol("x|y") | sympy.Symbol("z"), ["x|y", "z"])
    assert "\\|" in rule.to_markdown()
    table = rules_to_markdown([rule.with_metrics(0.5, None)])
    assert table.splitlines()[2] == f"| y0 | {rule.to_markdown()} | 0.500 | – | 2 |"


def test_dict_round_trip_preserves_everything() -> None:
    names = ["has wings", "c1", "c2"]  # names need not be identifiers
    s = [sympy.Symbol(n) for n in names]
    expr = sympy.Or(sympy.And(s[0], ~s[1]), sympy.Xor(s[1], s[2]), sympy.Implies(s[2], s[0]))
    rule = Rule(expr, names, 1, "bird", accuracy=0.75, fidelity=1.0)
    back = Rule.from_dict(rule.to_dict())
    assert back == rule
    assert back.equivalent(rule)


def test_equivalence() -> None:
    a, b, c = sympy.symbols("a b c")
    assert equivalent((a & b) | (a & ~b), a)
    assert not equivalent(a | b, a ^ b)
    many = sympy.symbols("x0:24")  # beyond the truth-table limit: SAT decides
    assert equivalent(sympy.And(*many) | many[0], many[0])
    assert not equivalent(sympy.Or(*many), sympy.And(*many))


@pytest.mark.parametrize(
    "text, match",
    [("c0 & c9", "unknown concepts"), ("c0 &", "Could not parse"), ("c0 + 1", "not a Boolean")],
)
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_rule(text, ["c0", "c1"])


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="not in `concept_names`"):
        Rule(sympy.Symbol("z"), ["a"])
    with pytest.raises(TypeError, match="sympy Boolean"):
        Rule("a", ["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        Rule.from_string("a", ["a", "b"]).evaluate(torch.zeros(3, 3))
