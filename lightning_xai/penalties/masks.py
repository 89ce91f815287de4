"""Annotation masks: validation, rectangular annotations, largest-gradient masks.

A mask has the input's shape (or one that broadcasts to it); ``1``/``True`` marks a feature the
model must not rely on. Masks are ``bool`` or floating point (soft weights in [0, 1]).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_mask", "check_mask", "largest_gradient_mask"]


def check_mask(mask: Tensor, inputs: Tensor, name: str = "mask") -> Tensor:
    """Validate an annotation mask against the inputs and return it on their device.

    ``bool`` masks stay ``bool`` (the cheapest form for the penalty); floating-point masks are
    cast to the inputs' dtype.

    Args:
        mask: ``bool`` or floating-point tensor with the inputs' shape, or one that broadcasts
            to it (e.g. ``(N, 1, H, W)`` for ``(N, C, H, W)`` inputs).
        inputs: the batch the mask annotates.
        name: the argument name used in error messages.

    Raises:
        TypeError: if ``mask`` is not a tensor or has an integer/complex dtype, or ``inputs`` is
            not floating point.
        ValueError: if the shapes do not match.

    Example:
        >>> check_mask(torch.ones(2, 1, 3, 3, dtype=torch.bool), torch.zeros(2, 3, 3, 3)).dtype
        torch.bool
        >>> check_mask(torch.ones(2, 3, 3, 3, dtype=torch.float64), torch.zeros(2, 3, 3, 3)).dtype
        torch.float32
    """
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        got = inputs.dtype if isinstance(inputs, Tensor) else type(inputs).__name__
        raise TypeError(
            f"The inputs must be a floating-point tensor to take input gradients, got {got}; "
            "convert them with `x.float()`."
        )
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor, got {type(mask).__name__}; "
            f"build it with `torch.as_tensor(...)`."
        )
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"`{name}` must be a bool or floating-point tensor (1/True = forbidden feature), got "
            f"dtype {mask.dtype}; convert it with `{name}.bool()` or `{name}.float()`."
        )
    if mask.shape != inputs.shape and not _broadcasts_to(mask.shape, inputs.shape):
        raise ValueError(
            f"`{name}` has shape {tuple(mask.shape)} but the inputs have shape {tuple(inputs.shape)}; "
            f"`{name}` must have the inputs' shape (or one that broadcasts to it, such as "
            f"{(inputs.shape[0], 1, *inputs.shape[2:])} for a mask shared by all channels)."
        )
    if mask.dtype == torch.bool:
        return mask.to(device=inputs.device)
    return mask.to(dtype=inputs.dtype, device=inputs.device)


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    if len(shape) > len(target):
        return False
    return all(a in (1, b) for a, b in zip(reversed(shape), reversed(target)))


def box_mask(
    input_shape: tuple[int, ...] | torch.Size,
    boxes: Tensor,
) -> Tensor:
    """Rectangular annotations: one ``(top, left, height, width)`` box per sample.

    Args:
        input_shape: shape of one input, ``(C, H, W)`` (or ``(H, W)``).
        boxes: integer tensor of shape ``(N, 4)`` with ``(top, left, height, width)`` rows.

    Returns:
        A ``bool`` mask of shape ``(N, *input_shape)``, ``True`` inside each sample's box (all
        channels).

    Example:
        >>> m = box_mask((1, 4, 4), torch.tensor([[0, 0, 2, 2], [2, 1, 1, 3]]))
        >>> m.shape, int(m[0].sum()), m[1, 0, 2].tolist()
        (torch.Size([2, 1, 4, 4]), 4, [False, True, True, True])
    """
    if len(input_shape) < 2:
        raise ValueError(
            f"`input_shape` must end with (H, W), got {tuple(input_shape)}; pass e.g. (C, H, W)."
        )
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(
            f"`boxes` must be a tensor of shape (N, 4) with (top, left, height, width) rows, got {got}."
        )
    if boxes.is_floating_point() or boxes.dtype == torch.bool:
        raise TypeError(f"`boxes` must hold integers, got dtype {boxes.dtype}; use `boxes.long()`.")
    h, w = input_shape[-2], input_shape[-1]
    top, left, height, width = boxes.unbind(1)
    rows = torch.arange(h, device=boxes.device)
    cols = torch.arange(w, device=boxes.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])  # (N, W)
    plane = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    lead = (1,) * (len(input_shape) - 2)
    plane = plane.reshape(len(boxes), *lead, h, w)
    return plane.expand(len(boxes), *input_shape).clone()


def largest_gradient_mask(input_gradients: Tensor, cutoff: float = 0.67) -> Tensor:
    """Mark, per sample, the features whose gradient magnitude is at least ``cutoff`` times the
    sample's largest magnitude.

    Args:
        input_gradients: ``(N, ...)`` input gradients.
        cutoff: relative threshold in ``(0, 1]``; smaller values mark more features.

    Returns:
        A ``bool`` mask with the gradients' shape.

    Example:
        >>> largest_gradient_mask(torch.tensor([[1.0, -4.0, 3.0, 0.5]]), cutoff=0.7).tolist()
        [[False, True, True, False]]
    """
    if not 0.0 < cutoff <= 1.0:
        raise ValueError(
            f"`cutoff` must be in (0, 1] (share of each sample's largest gradient), got {cutoff!r}."
        )
    magnitude = input_gradients.detach().abs()
    peak = magnitude.flatten(1).amax(dim=1).reshape(-1, *([1] * (magnitude.dim() - 1)))
    return (magnitude >= cutoff * peak) & (peak > 0)
