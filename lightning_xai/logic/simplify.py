"""Sympy simplification of rules, guarded by size and time limits."""

from __future__ import annotations

import math
import threading

from sympy.logic.boolalg import Boolean, simplify_logic

from lightning_xai.logic.rule import count_literals

__all__ = ["simplify_rule_expr"]


def simplify_rule_expr(
    expr: Boolean,
    max_symbols: int = 8,
    max_literals: int = 64,
    timeout: float | None = 1.0,
) -> Boolean:
    """Minimal DNF of ``expr`` by sympy, or ``expr`` itself when that would be too costly.

    Sympy's minimisation is exponential in the number of symbols (a 10-symbol formula can take a
    minute), so it only runs when ``expr`` has at most ``max_symbols`` symbols and
    ``max_literals`` literals, and its answer is used only if it arrives within ``timeout``
    seconds (``None``: no limit). The result is logically equivalent to ``expr`` and never has
    more literals.

    Example:
        >>> import sympy
        >>> a, b = sympy.symbols("a b")
        >>> simplify_rule_expr((a & b) | (a & ~b) | (~a & b))
        a | b
    """
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(
            f"`timeout` must be a finite positive number of seconds or None (no limit), got "
            f"{timeout!r}."
        )
    for name, value in (("max_symbols", max_symbols), ("max_literals", max_literals)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    literals = count_literals(expr)
    if len(expr.free_symbols) > max_symbols or literals > max_literals or literals < 2:
        return expr
    result: list[Boolean] = []

    def work() -> None:
        result.append(simplify_logic(expr, form="dnf", force=True))

    if timeout is None:
        work()
    else:
        # sympy cannot be interrupted; the size guard above bounds what an abandoned run costs
        worker = threading.Thread(target=work, name="lightning-xai-simplify", daemon=True)
        worker.start()
        worker.join(timeout)
    if not result or count_literals(result[0]) > literals:
        return expr
    return result[0]
