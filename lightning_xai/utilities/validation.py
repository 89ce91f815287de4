"""Argument checks shared by every public constructor (clear errors before any work starts)."""

from __future__ import annotations

__all__ = ["check_positive_int"]


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
