"""Argument checks shared by every public constructor (clear errors before any work starts)."""

from __future__ import annotations

__all__ = ["check_finite", "check_positive_int"]


def check_positive_int(
    name: str, value: object, *, allow_none: bool = False, error: type[Exception] = ValueError
) -> None:
    """Raise ``error`` naming ``name`` and ``value`` unless ``value`` is an ``int`` >= 1.

    ``bool`` is rejected although it subclasses ``int``; ``None`` passes with ``allow_none``.

    Example:
        >>> check_positive_int("k", 3)
        >>> check_positive_int("k", 0)
        Traceback (most recent call last):
        ...
        ValueError: `k` must be a positive integer, got 0.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive integer or None" if allow_none else "a positive integer"
        raise error(f"`{name}` must be {allowed}, got {value!r}.")


def check_finite(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    exclusive: bool = False,
    allow_none: bool = False,
    error: type[Exception] = ValueError,
) -> None:
    """Raise ``error`` naming ``name`` and ``value`` unless ``value`` is a finite real number
    (not a bool), at least ``minimum`` (greater than it with ``exclusive``).

    Example:
        >>> check_finite("lr", 1e-3, minimum=0.0, exclusive=True)
        >>> check_finite("penalty_weight", float("inf"), minimum=0.0)
        Traceback (most recent call last):
        ...
        ValueError: `penalty_weight` must be a finite number >= 0.0, got inf.
    """
    import math

    if value is None and allow_none:
        return
    bound = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum}"
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (minimum is None or (value > minimum if exclusive else value >= minimum))
    )
    if not ok:
        none = " or None" if allow_none else ""
        raise error(f"`{name}` must be a finite number{bound}{none}, got {value!r}.")
