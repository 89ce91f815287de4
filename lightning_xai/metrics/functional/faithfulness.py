r"""Faithfulness of attributions: perturb what they rank first and watch the model's score.

**Pixel flipping / deletion and insertion curves** (Bach et al. 2015, Petsiuk et al. 2018).
Features are ranked by attribution (``order="morf"``: most relevant first, ``"lerf"``: least
relevant first). A curve point :math:`k = 0, \dots, S` is the target score (probability with
``softmax=True``) of the input whose first :math:`k \cdot s` ranked features are

* ``mode="deletion"``: replaced by the baseline (point 0 is the clean input);
* ``mode="insertion"``: taken from the input, the rest from the baseline (point 0 is the
  baseline).

The AUC is the trapezoidal area over an x-axis scaled to [0, 1] (the mean height of the curve).
**Score direction**: deletion with ``morf``: *lower is better*; insertion with ``morf``:
*higher is better* (``lerf`` reverses both). A feature is an element of ``attributions``: an
attribution of shape ``(n, 1, h, w)`` for ``(n, 3, h, w)`` inputs flips whole pixels.

**Region perturbation** (Samek et al. 2017) is deletion by square patches over the last two
dimensions (the last one for 1-D signals), ranked by the summed attribution of the patch; the
grid is centred like Quantus's padding when the patch does not divide the size.

**Faithfulness correlation** (Bhatt et al. 2020): for ``n_runs`` random subsets of
``subset_size`` features, the Pearson correlation between the summed attribution of the subset
and the drop of the target score when the subset is set to the baseline. In [-1, 1]; *higher
is better*; 0 when either side is constant (e.g. all-zero attributions).

Every perturbed input of a batch is built lazily and evaluated in chunks of ``chunk_size``
inputs, under ``torch.no_grad``, on the device of ``inputs``; a curve point whose input equals
the previous point's (the step only touched elements already equal to their replacement, such
as black background under a zero baseline) reuses that score instead of a forward pass.
Perturbed batches keep the memory format of ``inputs``: pass channels-last images
(``x.contiguous(memory_format=torch.channels_last)``) to run convolutions faster on the CPU. Inputs and attributions are
never modified. Ties in the ranking are broken by feature index (a stable sort).

Relation to Quantus 0.6.0: its ``PixelFlipping`` curve is our ``curve[:, 1:]`` (deletion,
``morf``) and its AUC ``np.trapz(curve[:, 1:])``; its ``RegionPerturbation`` curve is
``curve[:, :1] - curve[:, 1:]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lightning_xai.metrics.functional._quality import (
    Baseline,
    ForwardFunc,
    as_extras,
    baseline_like,
    check_attributions,
    check_target,
    chunks,
    pearson,
    select_rows,
    target_scores,
)
from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "FaithfulnessCurve",
    "faithfulness_correlation",
    "pixel_flipping",
    "region_perturbation",
]

Mode = Literal["deletion", "insertion"]
Order = Literal["morf", "lerf"]


@dataclass(frozen=True)
class FaithfulnessCurve:
    """A perturbation curve per sample and its area.

    Attributes:
        curve: ``(n, steps + 1)`` target scores, point 0 before any feature is perturbed.
        auc: ``(n,)`` trapezoidal area under ``curve`` on an x-axis scaled to [0, 1].
        mode: ``"deletion"`` or ``"insertion"``.
        order: ``"morf"`` or ``"lerf"``.
        higher_is_better: the score direction of ``auc``.
    """

    curve: Tensor
    auc: Tensor
    mode: str
    order: str
    higher_is_better: bool


def _like_inputs(batch: Tensor, inputs: Tensor) -> Tensor:
    """``batch`` in the memory format of ``inputs`` (channels-last images stay channels-last,
    which convolutions on the CPU run much faster)."""
    if (
        inputs.ndim == 4
        and not inputs.is_contiguous()
        and inputs.is_contiguous(memory_format=torch.channels_last)
    ):
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")


def higher_is_better(mode: str, order: str) -> bool:
    """Score direction of a curve's AUC: insertion of the most relevant first is good."""
    return (mode == "insertion") == (order == "morf")


def _element_groups(attributions: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Group of every input element (one group per attribution element) and group relevance."""
    shape = attributions.shape[1:]
    ids = torch.arange(math.prod(shape), device=inputs.device).reshape(shape)
    return ids.expand(inputs.shape[1:]).reshape(1, -1), attributions.flatten(1)


def _patch_groups(attributions: Tensor, inputs: Tensor, patch_size: int) -> tuple[Tensor, Tensor]:
    """Patch of every input element (patches span every channel) and summed relevance."""
    if inputs.ndim < 3:
        raise ValueError(
            f"region perturbation needs (n, c, length) or (n, c, h, w) inputs, got shape "
            f"{tuple(inputs.shape)}; use `pixel_flipping` for flat features."
        )
    spatial = inputs.shape[2:][-2:]
    coords = []
    counts = []
    for size in spatial:
        pad = (-size) % patch_size
        index = (torch.arange(size, device=inputs.device) + pad // 2) // patch_size
        coords.append(index)
        counts.append(int(index[-1]) + 1)
    if len(spatial) == 2:
        grid = coords[0][:, None] * counts[1] + coords[1][None, :]
    else:
        grid = coords[0]
    ids = grid.expand(inputs.shape[1:]).reshape(1, -1)
    expanded = attributions.expand_as(inputs).flatten(1).to(torch.float64)
    n_groups = math.prod(counts)
    relevance = torch.zeros(len(inputs), n_groups, dtype=torch.float64, device=inputs.device)
    relevance.scatter_add_(1, ids.expand(len(inputs), -1), expanded)
    return ids, relevance


def _curve_update(
    forward_func: ForwardFunc,
    inputs: Tensor,
    groups: Tensor,
    relevance: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    order: Order,
    baseline: Baseline,
    blur_sigma: float,
    step: int,
    max_steps: int | None,
    softmax: bool,
    chunk_size: int,
    extras: tuple[object, ...] | None = None,
) -> Tensor:
    """``(n, steps + 1)`` float64 curve; ``groups`` maps every flat input element to a group."""
    n, n_groups = relevance.shape
    key = -relevance if order == "morf" else relevance
    positions = key.to(torch.float64).sort(dim=1, stable=True).indices
    rank = torch.empty_like(positions).scatter_(
        1, positions, torch.arange(n_groups, device=positions.device).expand(n, -1)
    )
    element_rank = rank.gather(1, groups.expand(n, -1))  # (n, numel of one input)
    steps = math.ceil(n_groups / step)
    if max_steps is not None:
        steps = min(steps, max_steps)
    flat = inputs.flatten(1)
    base = baseline_like(baseline, inputs, blur_sigma).flatten(1)
    keep, swap = (flat, base) if mode == "deletion" else (base, flat)
    points = steps + 1
    # A step that only touches elements already equal to their replacement (e.g. black
    # background under a zero baseline) leaves the input unchanged: its score is the previous
    # point's. Only points whose input differs from the previous one are evaluated.
    moved = (flat != base) & (element_rank < steps * step)
    changed = torch.zeros(n, points, dtype=torch.bool, device=inputs.device)
    changed[:, 0] = True
    step_of = (element_rank // step + 1).clamp_max(steps)
    changed.scatter_(1, step_of.masked_fill(~moved, 0), True)
    pairs = changed.flatten().nonzero().squeeze(1)
    out = torch.empty(n * points, dtype=torch.float64, device=inputs.device)
    with torch.no_grad():
        for start, stop in chunks(len(pairs), chunk_size):
            j = pairs[start:stop]
            i, k = j // points, j % points
            mask = element_rank[i] < (k * step)[:, None]
            batch = torch.where(mask, swap[i], keep[i]).reshape(-1, *inputs.shape[1:])
            batch = _like_inputs(batch, inputs)
            rows = select_rows(extras, i, n)
            out[j] = target_scores(forward_func, batch, target[i], softmax, rows)
    # forward-fill the skipped points from the last evaluated one
    index = torch.arange(points, device=inputs.device).expand(n, -1)
    last = index.masked_fill(~changed, 0).cummax(dim=1).values
    return out.reshape(n, points).gather(1, last)


def _curve_compute(curve: Tensor, mode: str, order: str) -> FaithfulnessCurve:
    steps = curve.shape[1] - 1
    auc = torch.trapezoid(curve, dx=1.0 / max(steps, 1), dim=1)
    return FaithfulnessCurve(
        curve=curve.float(),
        auc=auc.float(),
        mode=mode,
        order=order,
        higher_is_better=higher_is_better(mode, order),
    )


def _check_curve_args(mode: str, order: str, step: int, chunk_size: int) -> None:
    _check_choice("mode", mode, ("deletion", "insertion"))
    _check_choice("order", order, ("morf", "lerf"))
    check_positive_int("features_per_step", step)
    check_positive_int("chunk_size", chunk_size)


def pixel_flipping(
    forward_func: ForwardFunc,
    inputs: Tensor,
    attributions: Tensor,
    target: Tensor | int,
    *,
    mode: Mode = "deletion",
    order: Order = "morf",
    baseline: Baseline = 0.0,
    features_per_step: int = 1,
    softmax: bool = True,
    blur_sigma: float = 1.0,
    chunk_size: int = 256,
    additional_forward_args: object = None,
) -> FaithfulnessCurve:
    """Deletion or insertion curve by feature and its AUC, one per sample.

    See the module docstring for the definition. **Score direction**: deletion + ``"morf"``:
    lower AUC is better; insertion + ``"morf"``: higher is better (``result.higher_is_better``).

    Args:
        forward_func: ``forward_func(inputs) -> (n, num_classes)`` scores.
        inputs: ``(n, ...)`` inputs (not modified).
        attributions: attributions shaped like ``inputs`` (size-1 dimensions broadcast: one
            feature covers them all, e.g. a whole RGB pixel).
        target: class index per sample (or one int for all).
        mode: ``"deletion"`` (perturb ranked features) or ``"insertion"`` (reveal them).
        order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
        baseline: replacement value: a number, a tensor broadcasting to ``inputs``,
            ``"black"`` (each sample's minimum), ``"mean"`` (each sample's mean) or ``"blur"``
            (a Gaussian-blurred copy of the input, ``blur_sigma`` in pixels).
        features_per_step: features perturbed between two curve points.
        softmax: score the target's probability (``True``) or its raw score.
        blur_sigma: standard deviation of the blur for ``baseline="blur"``.
        chunk_size: perturbed inputs per forward pass.
        additional_forward_args: further arguments of ``forward_func`` (a value or a tuple);
            tensors with one row per sample follow their sample into the perturbed batches.

    Returns:
        A :class:`FaithfulnessCurve` with ``curve`` ``(n, steps + 1)`` and ``auc`` ``(n,)``.

    Example:
        >>> weights = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
        >>> model = lambda x: torch.cat([x @ weights.T, -x @ weights.T], dim=1)
        >>> x = torch.ones(1, 4)
        >>> res = pixel_flipping(model, x, weights, target=0, softmax=False)
        >>> res.curve
        tensor([[6., 3., 1., 0., 0.]])
        >>> res.auc
        tensor([1.7500])
    """
    _check_curve_args(mode, order, features_per_step, chunk_size)
    check_attributions(attributions, inputs)
    inputs = inputs.detach()
    target = check_target(target, len(inputs), inputs.device)
    groups, relevance = _element_groups(attributions.detach().to(inputs.device), inputs)
    curve = _curve_update(
        forward_func,
        inputs,
        groups,
        relevance,
        target,
        mode=mode,
        order=order,
        baseline=baseline,
        blur_sigma=blur_sigma,
        step=features_per_step,
        max_steps=None,
        softmax=softmax,
        chunk_size=chunk_size,
        extras=as_extras(additional_forward_args),
    )
    return _curve_compute(curve, mode, order)


def region_perturbation(
    forward_func: ForwardFunc,
    inputs: Tensor,
    attributions: Tensor,
    target: Tensor | int,
    *,
    patch_size: int = 8,
    mode: Mode = "deletion",
    order: Order = "morf",
    baseline: Baseline = 0.0,
    regions: int | None = None,
    softmax: bool = True,
    blur_sigma: float = 1.0,
    chunk_size: int = 256,
    additional_forward_args: object = None,
) -> FaithfulnessCurve:
    """Deletion or insertion curve by square patch and its AUC, one per sample.

    Patches of ``patch_size`` (all channels) are ranked by their summed attribution. **Score
    direction**: as :func:`pixel_flipping` (deletion + ``"morf"``: lower AUC is better).

    Args:
        forward_func: ``forward_func(inputs) -> (n, num_classes)`` scores.
        inputs: ``(n, c, h, w)`` images or ``(n, c, length)`` signals (not modified).
        attributions: attributions broadcasting to ``inputs``.
        target: class index per sample (or one int for all).
        patch_size: side of a patch.
        mode: ``"deletion"`` or ``"insertion"``.
        order: ``"morf"`` or ``"lerf"``.
        baseline: as in :func:`pixel_flipping`.
        regions: stop after this many patches (``None``: all).
        softmax: score the target's probability (``True``) or its raw score.
        blur_sigma: standard deviation of the blur for ``baseline="blur"``.
        chunk_size: perturbed inputs per forward pass.
        additional_forward_args: further arguments of ``forward_func`` (a value or a tuple);
            tensors with one row per sample follow their sample into the perturbed batches.

    Returns:
        A :class:`FaithfulnessCurve` with ``curve`` ``(n, regions + 1)`` and ``auc`` ``(n,)``.

    Example:
        >>> model = lambda x: torch.stack([x[:, 0, :2, :2].sum((1, 2)), x.sum((1, 2, 3))], 1)
        >>> x, attr = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
        >>> attr[0, 0, :2, :2] = 1.0  # the top-left patch is the one the model reads
        >>> region_perturbation(model, x, attr, 0, patch_size=2, softmax=False).curve
        tensor([[4., 0., 0., 0., 0.]])
    """
    _check_curve_args(mode, order, 1, chunk_size)
    check_positive_int("patch_size", patch_size)
    check_positive_int("regions", regions, allow_none=True)
    check_attributions(attributions, inputs)
    inputs = inputs.detach()
    target = check_target(target, len(inputs), inputs.device)
    groups, relevance = _patch_groups(attributions.detach().to(inputs.device), inputs, patch_size)
    curve = _curve_update(
        forward_func,
        inputs,
        groups,
        relevance,
        target,
        mode=mode,
        order=order,
        baseline=baseline,
        blur_sigma=blur_sigma,
        step=1,
        max_steps=regions,
        softmax=softmax,
        chunk_size=chunk_size,
        extras=as_extras(additional_forward_args),
    )
    return _curve_compute(curve, mode, order)


def _random_subsets(
    n: int, n_groups: int, n_runs: int, subset_size: int, seed: int | None
) -> Tensor:
    """``(n, n_runs, n_groups)`` bool masks of random feature subsets (drawn on the CPU)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    masks = torch.zeros(n, n_runs, n_groups, dtype=torch.bool)
    for i in range(n):
        keys = torch.rand(n_runs, n_groups, generator=generator)
        picks = keys.topk(subset_size, dim=1, sorted=False).indices
        masks[i].scatter_(1, picks, True)
    return masks


def _faithfulness_correlation_update(
    forward_func: ForwardFunc,
    inputs: Tensor,
    attributions: Tensor,
    target: Tensor | int,
    *,
    n_runs: int,
    subset_size: int | None,
    baseline: Baseline,
    softmax: bool,
    seed: int | None,
    chunk_size: int,
    blur_sigma: float = 1.0,
    additional_forward_args: object = None,
) -> Tensor:
    """``(n,)`` float64 correlations."""
    check_attributions(attributions, inputs)
    inputs = inputs.detach()
    n = len(inputs)
    target = check_target(target, n, inputs.device)
    groups, relevance = _element_groups(attributions.detach().to(inputs.device), inputs)
    n_groups = relevance.shape[1]
    size = max(1, n_groups // 4) if subset_size is None else subset_size
    if size > n_groups:
        raise ValueError(
            f"`subset_size`={size} exceeds the {n_groups} features of a sample; pass "
            f"subset_size <= {n_groups}."
        )
    masks = _random_subsets(n, n_groups, n_runs, size, seed).to(inputs.device)
    flat = inputs.flatten(1)
    base = baseline_like(baseline, inputs, blur_sigma).flatten(1)
    drops = torch.empty(n * n_runs, dtype=torch.float64, device=inputs.device)
    extras = as_extras(additional_forward_args)
    with torch.no_grad():
        clean = target_scores(forward_func, inputs, target, softmax, extras or ())
        for start, stop in chunks(n * n_runs, chunk_size):
            j = torch.arange(start, stop, device=inputs.device)
            i, r = j // n_runs, j % n_runs
            mask = masks[i, r].gather(1, groups.expand(len(j), -1))
            batch = torch.where(mask, base[i], flat[i]).reshape(-1, *inputs.shape[1:])
            batch = _like_inputs(batch, inputs)
            rows = select_rows(extras, i, n)
            drops[start:stop] = clean[i] - target_scores(
                forward_func, batch, target[i], softmax, rows
            )
    summed = (relevance.to(torch.float64)[:, None, :] * masks).sum(-1)
    return pearson(summed, drops.reshape(n, n_runs))


def faithfulness_correlation(
    forward_func: ForwardFunc,
    inputs: Tensor,
    attributions: Tensor,
    target: Tensor | int,
    *,
    n_runs: int = 100,
    subset_size: int | None = None,
    baseline: Baseline = 0.0,
    softmax: bool = True,
    seed: int | None = 0,
    chunk_size: int = 256,
    additional_forward_args: object = None,
) -> Tensor:
    """Faithfulness correlation (Bhatt et al. 2020), one value per sample; higher is better.

    Args:
        forward_func: ``forward_func(inputs) -> (n, num_classes)`` scores.
        inputs: ``(n, ...)`` inputs (not modified).
        attributions: attributions broadcasting to ``inputs``.
        target: class index per sample (or one int for all).
        n_runs: random subsets per sample.
        subset_size: features per subset (``None``: a quarter of them).
        baseline: as in :func:`pixel_flipping`.
        softmax: score the target's probability (``True``) or its raw score.
        seed: seed of the subsets (a private CPU generator; ``None``: the global one).
        chunk_size: perturbed inputs per forward pass.
        additional_forward_args: further arguments of ``forward_func``, as in
            :func:`pixel_flipping`.

    Returns:
        ``(n,)`` Pearson correlations in [-1, 1] (0 where attributions or drops are constant).

    Example:
        >>> w = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, 0.0]])
        >>> model = lambda x: torch.cat([x @ w.T, torch.zeros(len(x), 1)], dim=1)
        >>> x = torch.ones(3, 6)
        >>> faithfulness_correlation(model, x, w.expand(3, 6), 0, softmax=False, subset_size=2)
        tensor([1., 1., 1.])
    """
    check_positive_int("n_runs", n_runs)
    check_positive_int("subset_size", subset_size, allow_none=True)
    check_positive_int("chunk_size", chunk_size)
    corr = _faithfulness_correlation_update(
        forward_func,
        inputs,
        attributions,
        target,
        n_runs=n_runs,
        subset_size=subset_size,
        baseline=baseline,
        softmax=softmax,
        seed=seed,
        chunk_size=chunk_size,
        additional_forward_args=additional_forward_args,
    )
    return corr.float()
