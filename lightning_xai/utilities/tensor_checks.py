"""Checks of tensor arguments shared by the modules, the logic package and the metrics: every
non-finite, empty or out-of-range input raises a ``ValueError`` that names the argument, what
was found (the count and the first row) and the fix, before anything is computed."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "check_binary_targets",
    "check_class_indices",
    "check_finite_rows",
    "check_not_empty",
    "check_tensor",
    "check_threshold",
    "check_unit_interval",
]


def check_tensor(name: str, value: object) -> Tensor:
    """Raise ``TypeError`` naming ``name`` unless ``value`` is a tensor; return it.

    Example:
        >>> check_tensor("x", [1.0])
        Traceback (most recent call last):
        ...
        TypeError: `x` must be a torch.Tensor, got list; build it with `torch.as_tensor(...)`.
    """
    if not isinstance(value, Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor, got {type(value).__name__}; build it with "
            "`torch.as_tensor(...)`."
        )
    return value


def check_not_empty(name: str, value: Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` when ``value`` has no rows (or no elements).

    Example:
        >>> check_not_empty("concepts", torch.zeros(0, 3))
        Traceback (most recent call last):
        ...
        ValueError: `concepts` is empty (shape (0, 3)); pass at least one row.
    """
    if value.numel() == 0 or (value.dim() > 0 and value.shape[0] == 0):
        raise ValueError(f"`{name}` is empty (shape {tuple(value.shape)}); pass at least one row.")


def _rows(mask: Tensor) -> Tensor:
    """Per-row flags of an element-wise ``mask`` (a 0-d or 1-d mask is its own rows)."""
    return mask.reshape(len(mask), -1).any(dim=1) if mask.dim() > 1 else mask.reshape(-1)


def check_finite_rows(name: str, value: Tensor, fix: str = "") -> None:
    """Raise ``ValueError`` naming ``name`` when a floating ``value`` holds NaN or inf.

    The message gives how many rows are affected and the first one. Integer and Boolean
    tensors pass.

    Example:
        >>> check_finite_rows("x", torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))
        Traceback (most recent call last):
        ...
        ValueError: `x` holds NaN or inf in 1 of 2 rows, first at row 1 (value nan); drop or repair those rows before calling.
    """
    if not (value.is_floating_point() or value.is_complex()):
        return
    bad = ~torch.isfinite(value)
    if not bool(bad.any()):
        return
    rows = _rows(bad).cpu()
    first = int(rows.nonzero()[0, 0]) if rows.dim() else 0
    example = value.detach()[bad].flatten()[0].item()
    raise ValueError(
        f"`{name}` holds NaN or inf in {int(rows.sum())} of {rows.numel()} rows, first at row "
        f"{first} (value {example}); {fix or 'drop or repair those rows before calling.'}"
    )


def check_unit_interval(name: str, value: Tensor, what: str = "values") -> None:
    """Raise ``ValueError`` naming ``name`` unless every value lies in [0, 1] (after
    :func:`check_finite_rows`). Boolean tensors pass.

    Example:
        >>> check_unit_interval("concepts", torch.tensor([[0.2, 1.5]]), "concepts")
        Traceback (most recent call last):
        ...
        ValueError: `concepts` must hold concepts in [0, 1] (Boolean, 0/1 or probabilities), got 1.5 at row 0 (1 of 1 rows outside); rescale them, e.g. with `torch.sigmoid` for logits.
    """
    if value.dtype == torch.bool:
        return
    check_finite_rows(name, value)
    bad = (value < 0) | (value > 1)
    if not bool(bad.any()):
        return
    rows = _rows(bad).cpu()
    first = int(rows.nonzero()[0, 0]) if rows.dim() else 0
    example = value.detach()[bad].flatten()[0].item()
    raise ValueError(
        f"`{name}` must hold {what} in [0, 1] (Boolean, 0/1 or probabilities), got {example} at "
        f"row {first} ({int(rows.sum())} of {rows.numel()} rows outside); rescale them, e.g. "
        "with `torch.sigmoid` for logits."
    )


def check_class_indices(name: str, value: Tensor, n_classes: int | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` holds integer class indices
    ``(N,)`` in ``[0, n_classes)`` (only non-negative when ``n_classes`` is ``None``).

    Example:
        >>> check_class_indices("y", torch.tensor([0, 1, 7]), 2)
        Traceback (most recent call last):
        ...
        ValueError: `y` holds class indices up to 7 (row 2), but there are 2 classes; class indices must lie in [0, 1].
    """
    if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
        raise ValueError(
            f"`{name}` must be integer class indices, got {value.dtype}; convert class "
            f"indices with `{name}.long()`."
        )
    if value.numel() == 0:
        return
    low, high = int(value.min()), int(value.max())
    if low < 0:
        row = int((value.reshape(-1) < 0).nonzero()[0, 0])
        allowed = "[0, n_classes)" if n_classes is None else f"[0, {n_classes - 1}]"
        raise ValueError(
            f"`{name}` holds class indices down to {low} (row {row}); class indices must lie in "
            f"{allowed}."
        )
    if n_classes is not None and high >= n_classes:
        row = int((value.reshape(-1) >= n_classes).nonzero()[0, 0])
        raise ValueError(
            f"`{name}` holds class indices up to {high} (row {row}), but there are {n_classes} "
            f"classes; class indices must lie in [0, {n_classes - 1}]."
        )


def check_binary_targets(name: str, value: Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` holds 0/1 (or soft) targets in
    [0, 1]: Boolean, or finite numbers in [0, 1].

    Example:
        >>> check_binary_targets("y", torch.tensor([[0.0, 2.0]]))
        Traceback (most recent call last):
        ...
        ValueError: `y` must hold targets in [0, 1] (Boolean, 0/1 or probabilities), got 2.0 at row 0 (1 of 1 rows outside); rescale them, e.g. with `torch.sigmoid` for logits.
    """
    check_unit_interval(name, value, "targets")


def check_threshold(name: str, value: object) -> float:
    """Return ``value`` as a float after checking it is a finite number in [0, 1): the truth
    threshold of concepts in [0, 1] (true where they exceed it).

    Example:
        >>> check_threshold("threshold", 0.5)
        0.5
        >>> check_threshold("threshold", float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: `threshold` must be a finite number in [0, 1) (concepts are true above it), got nan.
    """
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value < 1.0
    )
    if not ok:
        raise ValueError(
            f"`{name}` must be a finite number in [0, 1) (concepts are true above it), got "
            f"{value!r}."
        )
    return float(value)
