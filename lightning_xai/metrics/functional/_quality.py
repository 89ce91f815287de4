"""Helpers shared by the explanation-quality metrics (private)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__: list[str] = []

ForwardFunc = Callable[..., Tensor]
"""``forward_func(inputs, *additional_forward_args) -> (n, num_classes)`` scores (e.g. a
model, or ``adapter.split(batch, model).forward_func(model)`` with ``additional_forward_args``
the adapted batch's ``extras``)."""

ExplainFunc = Callable[..., Tensor]
"""``explain_fn(inputs, target, *additional_forward_args) -> attributions`` like ``inputs``."""


def select_rows(extras: tuple[object, ...] | None, index: Tensor, n: int) -> tuple[object, ...]:
    """Rows ``index`` of every tensor in ``extras`` whose first dimension is ``n`` (the batch);
    other arguments pass unchanged. Perturbed copies of sample ``i`` keep ``i``'s extras."""
    if not extras:
        return ()
    return tuple(
        e[index.to(e.device)] if isinstance(e, Tensor) and e.ndim and len(e) == n else e
        for e in extras
    )


def as_extras(additional_forward_args: object) -> tuple[object, ...] | None:
    """``additional_forward_args`` as a tuple (one non-tuple value is wrapped)."""
    if additional_forward_args is None:
        return None
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


Baseline = float | Tensor | Literal["black", "mean", "blur"]


def check_attributions(attributions: Tensor, inputs: Tensor) -> None:
    """Raise unless ``attributions`` broadcasts to ``inputs`` with the same number of samples."""
    if attributions.ndim != inputs.ndim or len(attributions) != len(inputs):
        raise ValueError(
            f"`attributions` has shape {tuple(attributions.shape)} but `inputs` has "
            f"{tuple(inputs.shape)}; pass one attribution per input feature (size-1 dimensions "
            "broadcast, e.g. one value per pixel for every channel)."
        )
    try:
        torch.broadcast_shapes(attributions.shape, inputs.shape)
    except RuntimeError:
        raise ValueError(
            f"`attributions` of shape {tuple(attributions.shape)} does not broadcast to "
            f"`inputs` of shape {tuple(inputs.shape)}."
        ) from None
    if torch.broadcast_shapes(attributions.shape, inputs.shape) != inputs.shape:
        raise ValueError(
            f"`attributions` of shape {tuple(attributions.shape)} is larger than `inputs` of "
            f"shape {tuple(inputs.shape)}."
        )


def check_target(target: Tensor | int, n: int, device: torch.device) -> Tensor:
    """``target`` as an ``(n,)`` long tensor on ``device``."""
    target = torch.as_tensor(target, device=device)
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"`target` must hold integer class indices, got dtype {target.dtype}.")
    if target.ndim == 0:
        target = target.expand(n)
    if target.shape != (n,):
        raise ValueError(
            f"`target` must be an int or one class index per sample ({n},), got shape "
            f"{tuple(target.shape)}."
        )
    return target.long()


def check_mask(mask: Tensor, attributions: Tensor) -> Tensor:
    """``mask`` as a bool tensor shaped like ``attributions`` (broadcast if needed)."""
    if len(mask) != len(attributions):
        raise ValueError(
            f"`mask` has {len(mask)} samples but `attributions` has {len(attributions)}."
        )
    try:
        return mask.to(attributions.device).bool().expand_as(attributions)
    except RuntimeError:
        raise ValueError(
            f"`mask` of shape {tuple(mask.shape)} does not broadcast to `attributions` of shape "
            f"{tuple(attributions.shape)}; pass a mask shaped like the attributions."
        ) from None


def target_scores(
    forward_func: ForwardFunc,
    inputs: Tensor,
    target: Tensor,
    softmax: bool,
    extras: tuple[object, ...] = (),
) -> Tensor:
    """Score (probability with ``softmax``) of ``target`` for each row of ``inputs``."""
    out = forward_func(inputs, *extras)
    if not isinstance(out, Tensor) or out.ndim != 2 or len(out) != len(inputs):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"`forward_func` must return (n, num_classes) scores for n inputs, got {shape} for "
            f"{len(inputs)} inputs; wrap the model so it returns class scores (e.g. with a "
            "`BatchAdapter`'s `forward_func`)."
        )
    if softmax:
        out = out.float().softmax(dim=1)
    return out.gather(1, target[:, None].to(out.device)).squeeze(1).to(torch.float64)


def baseline_like(baseline: Baseline, inputs: Tensor, blur_sigma: float = 1.0) -> Tensor:
    """The replacement values for every element of ``inputs`` (a tensor shaped like it)."""
    if isinstance(baseline, str):
        dims = tuple(range(1, inputs.ndim))
        if baseline == "black":
            return inputs.amin(dim=dims, keepdim=True).expand_as(inputs)
        if baseline == "mean":
            return inputs.mean(dim=dims, keepdim=True).expand_as(inputs)
        if baseline == "blur":
            return gaussian_blur(inputs, blur_sigma)
        raise ValueError(
            f"`baseline` must be a number, a tensor, 'black', 'mean' or 'blur', got {baseline!r}."
        )
    if isinstance(baseline, Tensor):
        base = baseline.to(inputs.device, inputs.dtype)
        try:
            if base.ndim == inputs.ndim - 1:
                base = base.unsqueeze(0)
            return base.expand_as(inputs)
        except RuntimeError:
            raise ValueError(
                f"`baseline` of shape {tuple(baseline.shape)} does not broadcast to `inputs` of "
                f"shape {tuple(inputs.shape)}; pass a scalar, one example or one per sample."
            ) from None
    if isinstance(baseline, bool) or not isinstance(baseline, int | float):
        raise TypeError(f"`baseline` must be a number, a tensor or a string, got {baseline!r}.")
    return torch.full_like(inputs, float(baseline))


def gaussian_blur(inputs: Tensor, sigma: float) -> Tensor:
    """Per-channel Gaussian blur over the spatial dimensions of ``(n, c, *spatial)`` inputs."""
    if sigma <= 0:
        raise ValueError(f"`blur_sigma` must be > 0, got {sigma}.")
    spatial = inputs.ndim - 2
    if spatial not in (1, 2):
        raise ValueError(
            f"baseline='blur' needs (n, c, length) or (n, c, h, w) inputs, got shape "
            f"{tuple(inputs.shape)}; pass a number or a tensor as `baseline`."
        )
    radius = max(1, math.ceil(2 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=inputs.dtype, device=inputs.device)
    kernel = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = inputs.shape[1]
    out = inputs
    for dim in range(spatial):
        shape = [1] * spatial
        shape[dim] = -1
        weight = kernel.reshape(1, 1, *shape).expand(c, 1, *shape).contiguous()
        pad = [0, 0] * spatial
        pad[2 * (spatial - 1 - dim)] = pad[2 * (spatial - 1 - dim) + 1] = radius
        out = F.pad(out, pad, mode="replicate")
        conv = F.conv1d if spatial == 1 else F.conv2d
        out = conv(out, weight, groups=c)
    return out


def average_ranks(values: Tensor, valid: Tensor | None = None) -> Tensor:
    """Row-wise ranks (1-based, ties get their average rank) of ``(n, d)`` values.

    With ``valid``, ranks are taken among the valid entries of each row only (others get 0).
    """
    values = values.to(torch.float64)
    if valid is not None:
        values = values.masked_fill(~valid, float("inf"))
    ordered = values.sort(dim=1).values
    low = torch.searchsorted(ordered, values, right=False)
    high = torch.searchsorted(ordered, values, right=True)
    ranks = (low + high + 1).to(torch.float64) / 2
    return ranks if valid is None else ranks.masked_fill(~valid, 0.0)


def pearson(a: Tensor, b: Tensor, weight: Tensor | None = None) -> Tensor:
    """Row-wise Pearson correlation of ``(n, d)`` tensors; 0 where a row is constant.

    ``weight`` (bool ``(n, d)``) restricts each row to its selected entries.
    """
    a, b = a.to(torch.float64), b.to(torch.float64)
    w = torch.ones_like(a) if weight is None else weight.to(torch.float64)
    count = w.sum(1, keepdim=True).clamp_min(1)
    a = (a - (a * w).sum(1, keepdim=True) / count) * w
    b = (b - (b * w).sum(1, keepdim=True) / count) * w
    num = (a * b).sum(1)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    # a relative tolerance: a row that is constant up to rounding counts as constant
    scale = (a.abs().amax(1) * b.abs().amax(1)).clamp_min(torch.finfo(torch.float64).tiny)
    ok = den > 1e-12 * scale * count.squeeze(1)
    return torch.where(ok, num / den.where(ok, torch.ones_like(den)), torch.zeros_like(num))


def spearman(a: Tensor, b: Tensor, valid: Tensor | None = None) -> Tensor:
    """Row-wise Spearman correlation (average ranks for ties); 0 where a row is constant."""
    return pearson(average_ranks(a, valid), average_ranks(b, valid), valid)


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(total)`` in pieces of at most ``size``."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]
