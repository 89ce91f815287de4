"""Reference inputs ("baselines") for attribution methods."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

BaselineName = Literal["zeros", "mean", "blur"]
BaselineLike = BaselineName | float | int | Tensor
"""A baseline: ``"zeros"``, ``"mean"`` (of the training inputs), ``"blur"`` (a Gaussian blur of
each input), a constant, or a tensor shaped like one input, a batch of inputs, or a set of
reference inputs for distribution methods (GradientShap, DeepLiftShap)."""

BASELINE_NAMES: tuple[str, ...] = ("zeros", "mean", "blur")


def validate_baseline(baseline: object) -> None:
    """Raise early when ``baseline`` is not a :data:`BaselineLike`.

    Example:
        >>> validate_baseline("zeros")
        >>> validate_baseline("noise")
        Traceback (most recent call last):
        ...
        ValueError: `baseline='noise'` is not supported. Use one of ('zeros', 'mean', 'blur'), a number, or a tensor shaped like one input (or a batch of inputs).
    """
    if isinstance(baseline, str):
        if baseline not in BASELINE_NAMES:
            raise ValueError(
                f"`baseline={baseline!r}` is not supported. Use one of {BASELINE_NAMES}, a number,"
                " or a tensor shaped like one input (or a batch of inputs)."
            )
        return
    if isinstance(baseline, bool) or not isinstance(baseline, int | float | Tensor):
        raise TypeError(
            f"`baseline` must be one of {BASELINE_NAMES}, a number or a tensor, got "
            f"{baseline!r} of type {type(baseline).__name__}."
        )
    if isinstance(baseline, float) and not math.isfinite(baseline):
        raise ValueError(f"`baseline={baseline}` must be finite.")


def gaussian_blur(inputs: Tensor, sigma: float) -> Tensor:
    """Blur each channel of a batch of images ``(N, C, H, W)`` (or 1-D signals ``(N, C, L)``).

    Args:
        inputs: the batch to blur.
        sigma: standard deviation of the Gaussian kernel, in pixels.

    Example:
        >>> x = torch.zeros(1, 1, 7, 7); x[0, 0, 3, 3] = 1.0
        >>> y = gaussian_blur(x, sigma=0.8)
        >>> round(float(y.sum()), 4), bool(y[0, 0, 3, 3] < 1)
        (1.0, True)
    """
    if inputs.dim() not in (3, 4):
        raise ValueError(
            f"`baseline='blur'` needs images (N, C, H, W) or signals (N, C, L), got inputs of "
            f"shape {tuple(inputs.shape)}. Use baseline='zeros' or 'mean' for tabular data."
        )
    if sigma <= 0:
        raise ValueError(f"`blur_sigma={sigma}` must be positive.")
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=inputs.dtype, device=inputs.device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = inputs.shape[1]
    out = inputs
    for dim in range(2, inputs.dim()):
        shape = [1] * inputs.dim()
        shape[dim] = kernel.numel()
        weight = kernel.reshape(shape[1:]).unsqueeze(0).expand(channels, *shape[1:]).contiguous()
        pad = [0, 0] * (inputs.dim() - 2)
        # F.pad lists the last dimension first
        pos = 2 * (inputs.dim() - 1 - dim)
        pad[pos] = pad[pos + 1] = radius
        padded = F.pad(out, pad, mode="replicate")
        conv = F.conv2d if inputs.dim() == 4 else F.conv1d
        out = conv(padded, weight, groups=channels)
    return out


def mean_input(data: Tensor | Iterable[object], max_samples: int | None = None) -> Tensor:
    """Mean input over a tensor of inputs or over batches (as a dataloader yields them).

    Batches may be tensors or tuples/lists whose first element is the input batch. Returns a
    tensor shaped like one input.

    Args:
        data: inputs ``(N, ...)`` or an iterable of batches.
        max_samples: stop once this many inputs were read (``None``: all).

    Example:
        >>> mean_input(torch.tensor([[0.0, 2.0], [2.0, 4.0]]))
        tensor([1., 3.])
        >>> mean_input([(torch.ones(3, 2), 0), (torch.zeros(1, 2), 1)])
        tensor([0.7500, 0.7500])
    """
    batches = [data] if isinstance(data, Tensor) else data
    total: Tensor | None = None
    count = 0
    for item in batches:
        x = item[0] if isinstance(item, tuple | list) else item
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise TypeError(
                "Cannot compute a 'mean' baseline: expected batches of input tensors (or tuples "
                f"starting with one), got {type(x).__name__}."
            )
        if max_samples is not None:
            x = x[: max_samples - count]
        part = x.detach().double().sum(dim=0)
        total = part if total is None else total + part.to(total.device)
        count += x.shape[0]
        if max_samples is not None and count >= max_samples:
            break
    if total is None or count == 0:
        raise ValueError("Cannot compute a 'mean' baseline from empty data.")
    return (total / count).to(torch.get_default_dtype())


def make_baseline(
    baseline: BaselineLike,
    inputs: Tensor,
    *,
    mean: Tensor | None = None,
    blur_sigma: float | None = None,
    distribution: bool = False,
) -> Tensor:
    """Turn a :data:`BaselineLike` into a tensor captum accepts for ``inputs``.

    Single-reference methods get a tensor with a batch dimension of 1 (broadcast) or
    ``len(inputs)``; distribution methods (``distribution=True``) accept any number of
    references ``(K, ...)``.

    Args:
        baseline: the baseline specification.
        inputs: the batch being explained ``(N, ...)``.
        mean: the mean training input, required for ``"mean"``.
        blur_sigma: Gaussian sigma for ``"blur"`` (default: a quarter of the smallest spatial
            side).
        distribution: whether the method draws from a distribution of baselines.

    Raises:
        ValueError: when the baseline does not fit the inputs, naming both shapes.

    Example:
        >>> x = torch.rand(4, 1, 8, 8)
        >>> make_baseline("zeros", x).shape
        torch.Size([1, 1, 8, 8])
        >>> make_baseline("blur", x).shape
        torch.Size([4, 1, 8, 8])
        >>> make_baseline(torch.rand(5, 1, 8, 8), x, distribution=True).shape
        torch.Size([5, 1, 8, 8])
    """
    validate_baseline(baseline)
    sample_shape = tuple(inputs.shape[1:])
    if isinstance(baseline, str):
        if baseline == "zeros":
            out = torch.zeros((1, *sample_shape), dtype=inputs.dtype, device=inputs.device)
        elif baseline == "mean":
            if mean is None:
                raise ValueError(
                    "`baseline='mean'` needs the mean of the training inputs: call "
                    "`fit_baseline(train_inputs)` first (the AttributionLogger does this from "
                    "the datamodule's training set)."
                )
            out = _as_batch(mean.to(device=inputs.device, dtype=inputs.dtype), sample_shape)
        else:
            sides = inputs.shape[2:]
            if blur_sigma is None:
                blur_sigma = max(0.5, min(sides) / 4) if len(sides) else 1.0
            out = gaussian_blur(inputs.detach(), blur_sigma)
    elif isinstance(baseline, Tensor):
        out = _as_batch(baseline.to(device=inputs.device, dtype=inputs.dtype), sample_shape)
        if not distribution and out.shape[0] not in (1, inputs.shape[0]):
            raise ValueError(
                f"`baseline` has batch size {out.shape[0]} but the inputs have {inputs.shape[0]}; "
                "give one baseline (shape of one input) or one per input."
            )
    else:
        out = torch.full((1, *sample_shape), float(baseline), dtype=inputs.dtype)
        out = out.to(inputs.device)
    return out.detach()


def _as_batch(baseline: Tensor, sample_shape: tuple[int, ...]) -> Tensor:
    if tuple(baseline.shape) == sample_shape:
        return baseline.unsqueeze(0)
    if tuple(baseline.shape[1:]) == sample_shape:
        return baseline
    raise ValueError(
        f"`baseline` has shape {tuple(baseline.shape)}, which fits neither one input "
        f"{sample_shape} nor a batch (K, *{sample_shape}). Give a tensor shaped like one input."
    )
