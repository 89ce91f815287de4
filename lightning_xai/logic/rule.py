"""Logic rules over named Boolean concepts, and their vectorised evaluation."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy
import torch
from sympy.logic.boolalg import (
    And,
    Boolean,
    BooleanFalse,
    BooleanTrue,
    Equivalent,
    Implies,
    Not,
    Or,
    Xor,
)
from sympy.parsing.sympy_parser import parse_expr
from torch import Tensor

from lightning_xai.utilities.tensor_checks import (
    check_tensor,
    check_threshold,
    check_unit_interval,
)

__all__ = [
    "Rule",
    "count_literals",
    "equivalent",
    "evaluate_expr",
    "parse_rule",
    "rules_to_markdown",
    "truth_table",
]

#: Rules over at most this many symbols are evaluated through a cached truth table.
_TRUTH_TABLE_MAX_SYMBOLS = 16
#: Equivalence is checked by truth tables up to this many symbols, by SAT beyond.
_EQUIVALENCE_TABLE_MAX_SYMBOLS = 20


def count_literals(expr: Boolean) -> int:
    """Number of literal occurrences (symbols, negated or not) in ``expr``.

    Example:
        >>> import sympy
        >>> a, b = sympy.symbols("a b")
        >>> count_literals((a & ~b) | (~a & b))
        4
    """
    if isinstance(expr, sympy.Symbol):
        return 1
    if isinstance(expr, (BooleanTrue, BooleanFalse)):
        return 0
    return sum(count_literals(arg) for arg in expr.args)


def _as_bool(concepts: Tensor, threshold: float) -> Tensor:
    return concepts if concepts.dtype == torch.bool else concepts > threshold


def check_concepts(name: str, concepts: object, width: int | None = None) -> Tensor:
    """Check concept values before a rule reads them; return them.

    Concepts are a ``(N, D)`` tensor, Boolean or numbers in [0, 1] (0/1, or probabilities that
    are true above a threshold). NaN or inf, values outside [0, 1] and a wrong width raise a
    ``ValueError`` naming ``name``, the row and the value.

    Example:
        >>> check_concepts("concepts", torch.tensor([[0.2, float("nan")]]))
        Traceback (most recent call last):
        ...
        ValueError: `concepts` holds NaN or inf in 1 of 1 rows, first at row 0 (value nan); drop or repair those rows before calling.
    """
    concepts = check_tensor(name, concepts)
    if concepts.dim() != 2 or (width is not None and concepts.shape[1] != width):
        columns = "D" if width is None else str(width)
        raise ValueError(
            f"`{name}` must have shape (N, {columns}), one column per concept, got "
            f"{tuple(concepts.shape)}."
        )
    check_unit_interval(name, concepts.detach(), "concepts")
    return concepts


def evaluate_expr(expr: Boolean, columns: Mapping[sympy.Symbol, Tensor], n: int) -> Tensor:
    """Evaluate ``expr`` on Boolean columns, one tensor op per node of the expression tree.

    Args:
        expr: a sympy Boolean expression.
        columns: Boolean tensor of shape ``(n,)`` for every free symbol of ``expr``.
        n: number of rows (used for constant expressions).

    Example:
        >>> import sympy, torch
        >>> a, b = sympy.symbols("a b")
        >>> evaluate_expr(a & ~b, {a: torch.tensor([True, True]), b: torch.tensor([False, True])}, 2)
        tensor([ True, False])
    """
    if isinstance(expr, sympy.Symbol):
        return columns[expr]
    device = next(iter(columns.values())).device if columns else None
    if isinstance(expr, BooleanTrue):
        return torch.ones(n, dtype=torch.bool, device=device)
    if isinstance(expr, BooleanFalse):
        return torch.zeros(n, dtype=torch.bool, device=device)
    args = [evaluate_expr(arg, columns, n) for arg in expr.args]
    if isinstance(expr, Not):
        return ~args[0]
    if isinstance(expr, And):
        return functools.reduce(torch.logical_and, args)
    if isinstance(expr, Or):
        return functools.reduce(torch.logical_or, args)
    if isinstance(expr, Xor):
        return functools.reduce(torch.logical_xor, args)
    if isinstance(expr, Implies):
        return ~args[0] | args[1]
    if isinstance(expr, Equivalent):
        return torch.stack(args).all(dim=0) | ~torch.stack(args).any(dim=0)
    raise TypeError(
        f"Cannot evaluate {type(expr).__name__} node {expr}; rules may use And, Or, Not, Xor, "
        "Implies, Equivalent, True and False."
    )


def truth_table(expr: Boolean, symbols: Sequence[sympy.Symbol]) -> Tensor:
    """Truth table of ``expr`` over ``symbols``: entry ``i`` is the value when bit ``j`` of ``i``
    is the value of ``symbols[j]``.

    Example:
        >>> import sympy
        >>> a, b = sympy.symbols("a b")
        >>> truth_table(a | b, [a, b])
        tensor([False,  True,  True,  True])
    """
    k = len(symbols)
    codes = torch.arange(2**k)
    bits = (codes.unsqueeze(1) >> torch.arange(k)) & 1
    columns = {symbol: bits[:, j].bool() for j, symbol in enumerate(symbols)}
    return evaluate_expr(expr, columns, 2**k)


def equivalent(first: Boolean, second: Boolean) -> bool:
    """Whether two expressions are logically equivalent (truth tables; SAT for many symbols).

    Example:
        >>> import sympy
        >>> a, b = sympy.symbols("a b")
        >>> equivalent((a & b) | (a & ~b), a)
        True
    """
    symbols = sorted(first.free_symbols | second.free_symbols, key=lambda s: s.name)
    if len(symbols) <= _EQUIVALENCE_TABLE_MAX_SYMBOLS:
        return bool(torch.equal(truth_table(first, symbols), truth_table(second, symbols)))
    return not sympy.satisfiable(Xor(first, second))


def parse_rule(text: str, concept_names: Sequence[str]) -> Boolean:
    """Parse a formula such as ``"(c0 & c1) | ~c2"`` over ``concept_names``.

    Operators: ``&`` (and), ``|`` (or), ``~`` (not), ``^`` (xor), parentheses, ``True``/``False``.
    Concept names must be Python identifiers to appear in a formula string.

    Raises:
        ValueError: if the text does not parse or uses a name outside ``concept_names``.

    Example:
        >>> parse_rule("(c0 & c1) | ~c2", ["c0", "c1", "c2"])
        ~c2 | (c0 & c1)
    """
    local = {name: sympy.Symbol(name) for name in concept_names}
    try:
        expr = parse_expr(text, local_dict=local, evaluate=True)
    except Exception as err:  # sympy raises many kinds of errors for bad input
        raise ValueError(
            f"Could not parse rule {text!r}: {err}. Use &, |, ~ and parentheses over the "
            "concept names."
        ) from err
    if expr is True or expr is False:
        expr = sympy.true if expr else sympy.false
    if not isinstance(expr, Boolean):
        raise ValueError(f"Rule {text!r} is not a Boolean formula (parsed as {expr!r}).")
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in local)
    if unknown:
        raise ValueError(
            f"Rule {text!r} uses unknown concepts {unknown}; known concepts are "
            f"{list(concept_names)[:10]}{'...' if len(concept_names) > 10 else ''}."
        )
    return expr


_ASCII = {And: " & ", Or: " | ", Xor: " ^ ", Not: "~", Implies: " >> ", Equivalent: " <-> "}
_UNICODE = {And: " ∧ ", Or: " ∨ ", Xor: " ⊕ ", Not: "¬", Implies: " → ", Equivalent: " ↔ "}


def _format(
    expr: Boolean, ops: Mapping[type, str], rank: Callable[[sympy.Symbol], Any], top: bool = True
) -> str:
    """Print ``expr`` with operator strings ``ops``; terms ordered by size, then by ``rank``."""
    if isinstance(expr, sympy.Symbol):
        return expr.name
    if isinstance(expr, (BooleanTrue, BooleanFalse)):
        return str(bool(expr))
    if isinstance(expr, Not):
        return ops[Not] + _format(expr.args[0], ops, rank, top=False)

    def key(arg: Boolean) -> tuple[int, list[Any]]:
        return count_literals(arg), sorted(rank(symbol) for symbol in arg.free_symbols)

    args = expr.args if isinstance(expr, Implies) else sorted(expr.args, key=key)
    text = ops[type(expr)].join(_format(arg, ops, rank, top=False) for arg in args)
    return text if top else f"({text})"


def _to_tree(expr: Boolean) -> Any:
    if isinstance(expr, sympy.Symbol):
        return expr.name
    if isinstance(expr, (BooleanTrue, BooleanFalse)):
        return bool(expr)
    return {"op": type(expr).__name__, "args": [_to_tree(arg) for arg in expr.args]}


_OPS = {"And": And, "Or": Or, "Not": Not, "Xor": Xor, "Implies": Implies, "Equivalent": Equivalent}


def _from_tree(tree: Any) -> Boolean:
    if isinstance(tree, bool):
        return sympy.true if tree else sympy.false
    if isinstance(tree, str):
        return sympy.Symbol(tree)
    if not isinstance(tree, Mapping) or tree.get("op") not in _OPS:
        raise ValueError(f"Not a serialised rule expression: {tree!r}.")
    return _OPS[tree["op"]](*[_from_tree(arg) for arg in tree["args"]])


@dataclass(frozen=True)
class Rule:
    """A logic rule for one class: a sympy formula over named concept symbols.

    Args:
        expr: sympy Boolean expression whose symbols are named after ``concept_names``.
        concept_names: names of the concept columns, in column order.
        class_index: index of the class the rule explains.
        class_name: display name of the class (``"y{class_index}"`` if omitted).
        accuracy: agreement of the rule with the labels, when measured.
        fidelity: agreement of the rule with the model's predictions, when measured.
        threshold: truth threshold of concepts that are not Boolean: a concept in [0, 1] is
            true where it exceeds ``threshold`` (in [0, 1)). Concepts outside [0, 1] or NaN are
            rejected. Shown in the rule's ``repr`` and in :func:`rules_to_markdown`.

    Example:
        >>> import torch
        >>> rule = Rule.from_string("(c0 & ~c1) | (c1 & ~c0)", ["c0", "c1", "c2"], class_index=1)
        >>> str(rule), rule.complexity
        ('(c0 & ~c1) | (~c0 & c1)', 4)
        >>> rule.to_markdown()
        '(c0 ∧ ¬c1) ∨ (¬c0 ∧ c1)'
        >>> rule.evaluate(torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))
        tensor([ True, False])
    """

    expr: Boolean
    concept_names: tuple[str, ...]
    class_index: int = 0
    class_name: str = ""
    accuracy: float | None = None
    fidelity: float | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "concept_names", tuple(self.concept_names))
        object.__setattr__(self, "threshold", check_threshold("threshold", self.threshold))
        if not self.class_name:
            object.__setattr__(self, "class_name", f"y{self.class_index}")
        if not isinstance(self.expr, Boolean):
            raise TypeError(f"`expr` must be a sympy Boolean expression, got {self.expr!r}.")
        unknown = sorted(s.name for s in self.expr.free_symbols if s.name not in self._columns)
        if unknown:
            raise ValueError(
                f"Rule uses symbols {unknown} that are not in `concept_names`; name symbols "
                "after the concept columns."
            )

    @classmethod
    def from_string(
        cls, text: str, concept_names: Sequence[str], class_index: int = 0, class_name: str = ""
    ) -> Rule:
        """Build a rule from a formula string (see :func:`parse_rule`)."""
        return cls(parse_rule(text, concept_names), tuple(concept_names), class_index, class_name)

    @functools.cached_property
    def _columns(self) -> dict[str, int]:
        return {name: j for j, name in enumerate(self.concept_names)}

    @functools.cached_property
    def symbols(self) -> tuple[sympy.Symbol, ...]:
        """Free symbols of the rule, in concept-column order."""
        return tuple(sorted(self.expr.free_symbols, key=lambda s: self._columns[s.name]))

    @functools.cached_property
    def _table(self) -> Tensor:
        return truth_table(self.expr, self.symbols)

    @property
    def complexity(self) -> int:
        """Number of literals in the rule."""
        return count_literals(self.expr)

    def __str__(self) -> str:
        return _format(self.expr, _ASCII, self._rank)

    def _rank(self, symbol: sympy.Symbol) -> int:
        return self._columns[symbol.name]

    def to_latex(self) -> str:
        """LaTeX form of the formula."""
        return sympy.latex(self.expr)

    def to_markdown(self) -> str:
        """Unicode form (∧, ∨, ¬) with ``|`` escaped, ready for a markdown table cell."""
        return _format(self.expr, _UNICODE, self._rank).replace("|", "\\|")

    def evaluate(self, concepts: Tensor, threshold: float | None = None) -> Tensor:
        """Truth value of the rule on each row of ``concepts`` (shape ``(N, len(concept_names))``).

        Concepts are Boolean or numbers in [0, 1]; those that are not Boolean are true where
        they exceed ``threshold`` (default: the rule's :attr:`threshold`). NaN or inf and values
        outside [0, 1] raise a ``ValueError`` (they have no truth value). Rules over few
        symbols look rows up in a cached truth table; larger rules are evaluated node by node,
        always vectorised over rows.
        """
        threshold = self.threshold if threshold is None else check_threshold("threshold", threshold)
        check_concepts("concepts", concepts, len(self.concept_names))
        truth = _as_bool(concepts, threshold)
        index = [self._columns[s.name] for s in self.symbols]
        if len(index) <= _TRUTH_TABLE_MAX_SYMBOLS:
            weights = 2 ** torch.arange(len(index), device=truth.device)
            codes = (truth[:, index].long() * weights).sum(dim=1)
            return self._table.to(truth.device)[codes]
        columns = {s: truth[:, j] for s, j in zip(self.symbols, index)}
        return evaluate_expr(self.expr, columns, truth.shape[0])

    def equivalent(self, other: Rule | Boolean) -> bool:
        """Whether the formula is logically equivalent to ``other``'s."""
        return equivalent(self.expr, other.expr if isinstance(other, Rule) else other)

    def with_metrics(self, accuracy: float | None = None, fidelity: float | None = None) -> Rule:
        """A copy with the given metrics attached."""
        return dataclasses.replace(self, accuracy=accuracy, fidelity=fidelity)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :meth:`from_dict` restores it exactly."""
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "rule": str(self),
            "markdown": self.to_markdown(),
            "latex": self.to_latex(),
            "complexity": self.complexity,
            "accuracy": self.accuracy,
            "fidelity": self.fidelity,
            "concept_names": list(self.concept_names),
            "threshold": self.threshold,
            "expr": _to_tree(self.expr),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """Rebuild a rule written by :meth:`to_dict`."""
        return cls(
            _from_tree(data["expr"]),
            tuple(data["concept_names"]),
            int(data["class_index"]),
            str(data["class_name"]),
            data.get("accuracy"),
            data.get("fidelity"),
            float(data.get("threshold", 0.5)),
        )


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def rules_to_markdown(rules: Sequence[Rule]) -> str:
    """A markdown table of rules: class, rule, accuracy, fidelity and complexity, followed by
    the truth threshold of concepts that are not Boolean.

    Example:
        >>> rule = Rule.from_string("c0 & ~c1", ["c0", "c1"], class_index=1).with_metrics(1.0, 0.95)
        >>> print(rules_to_markdown([rule]))
        | class | rule | accuracy | fidelity | complexity |
        |---|---|---|---|---|
        | y1 | c0 ∧ ¬c1 | 1.000 | 0.950 | 2 |
        <BLANKLINE>
        Concepts in [0, 1] are true above 0.5.
    """
    lines = ["| class | rule | accuracy | fidelity | complexity |", "|---|---|---|---|---|"]
    for rule in rules:
        name = rule.class_name.replace("|", "\\|")
        lines.append(
            f"| {name} | {rule.to_markdown()} | {_cell(rule.accuracy)} | "
            f"{_cell(rule.fidelity)} | {rule.complexity} |"
        )
    thresholds = sorted({rule.threshold for rule in rules})
    if thresholds:
        above = " or ".join(f"{t:g}" for t in thresholds)
        lines += ["", f"Concepts in [0, 1] are true above {above}."]
    return "\n".join(lines)
