r"""Robustness of explanations to small input perturbations (lower is better for both).

* **Max-sensitivity** (Yeh et al. 2019; captum's ``sensitivity_max``): over ``n_samples``
  inputs :math:`x' = x + \delta`, :math:`\delta \sim U[-r, r]` per element,

  .. math:: \max_{x'} \lVert e(x') - e(x) \rVert_2 \,/\, \lVert e(x) \rVert_2

  (the denominator is 1 where :math:`e(x) = 0`, as in captum).
* **Local Lipschitz estimate** (Alvarez-Melis & Jaakkola 2018): over ``n_samples`` inputs
  :math:`x' = x + \delta`, :math:`\delta \sim \mathcal N(0, \sigma^2)` per element,
  :math:`\max_{x'} \lVert e(x') - e(x) \rVert_2 / \lVert x' - x \rVert_2`.

The noise is drawn from a private CPU generator seeded with ``seed`` (the global generator is
left alone), then moved to the inputs' device. ``explain_fn(inputs, target, *additional_forward_args)`` is called on
chunks of at most ``chunk_size`` perturbed inputs, with gradients enabled (also under
``inference_mode``). Inputs are never modified.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lightning_xai.metrics.functional._quality import (
    ExplainFunc,
    as_extras,
    check_target,
    chunks,
    select_rows,
)
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.validation import check_finite, check_positive_int

__all__ = ["local_lipschitz_estimate", "max_sensitivity"]


def _explain(
    explain_fn: ExplainFunc,
    inputs: Tensor,
    target: Tensor,
    chunk_size: int,
    extras: tuple[object, ...] | None,
    sample: Tensor,
    n: int,
) -> Tensor:
    """Explanations of ``inputs`` (copies of samples ``sample``) in chunks, as ``(m, d)``."""
    parts = []
    for start, stop in chunks(len(inputs), chunk_size):
        rows = select_rows(extras, sample[start:stop], n)
        with grad_enabled(inputs[start:stop], target[start:stop], rows) as (x, t, r):
            out = explain_fn(x, t, *r)
        if not isinstance(out, Tensor) or len(out) != stop - start:
            raise ValueError(
                f"`explain_fn(inputs, target)` must return one attribution per input, got "
                f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))} for {stop - start} inputs."
            )
        parts.append(out.detach().flatten(1).to(torch.float64))
    return torch.cat(parts)


def _robustness_update(
    explain_fn: ExplainFunc,
    inputs: Tensor,
    target: Tensor | int,
    *,
    noise: Literal["uniform", "normal"],
    scale: float,
    n_samples: int,
    seed: int | None,
    chunk_size: int,
    denominator: Literal["explanation", "input"],
    additional_forward_args: object = None,
) -> Tensor:
    extras = as_extras(additional_forward_args)
    inputs = inputs.detach()
    n = len(inputs)
    target = check_target(target, n, inputs.device)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    shape = (n_samples, *inputs.shape)
    if noise == "uniform":
        delta = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale
    else:
        delta = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    delta = delta.to(inputs.device, inputs.dtype)
    sample = torch.arange(n, device=inputs.device)
    clean = _explain(explain_fn, inputs, target, chunk_size, extras, sample, n)
    perturbed = (inputs[None] + delta).reshape(n_samples * n, *inputs.shape[1:])
    explained = _explain(
        explain_fn,
        perturbed,
        target.repeat(n_samples),
        chunk_size,
        extras,
        sample.repeat(n_samples),
        n,
    )
    change = (explained.reshape(n_samples, n, -1) - clean[None]).norm(dim=2)
    if denominator == "explanation":
        norm = clean.norm(dim=1)
        ratio = change / torch.where(norm == 0, torch.ones_like(norm), norm)
    else:
        step = (perturbed.reshape(n_samples, n, -1) - inputs.flatten(1)[None]).to(torch.float64)
        ratio = change / step.norm(dim=2).clamp_min(torch.finfo(torch.float64).tiny)
    return ratio.amax(dim=0)


def max_sensitivity(
    explain_fn: ExplainFunc,
    inputs: Tensor,
    target: Tensor | int,
    *,
    radius: float = 0.02,
    n_samples: int = 10,
    seed: int | None = 0,
    chunk_size: int = 256,
    additional_forward_args: object = None,
) -> Tensor:
    """Largest relative change of the explanation under uniform noise; lower is better.

    Args:
        explain_fn: ``explain_fn(inputs, target) -> attributions``.
        inputs: ``(n, ...)`` inputs (not modified).
        target: class index per sample (or one int for all).
        radius: half-width ``r`` of the uniform noise.
        n_samples: perturbed inputs per sample.
        seed: seed of the noise (``None``: the global generator).
        chunk_size: inputs per ``explain_fn`` call.
        additional_forward_args: further arguments of ``explain_fn`` (a value or a tuple);
            tensors with one row per sample follow their sample into the perturbed batches.

    Returns:
        ``(n,)`` values >= 0.

    Example:
        >>> explain = lambda x, t: 2.0 * x  # moves by at most 2 * 0.01 per element
        >>> values = max_sensitivity(explain, torch.ones(4, 3), 0, radius=0.01)
        >>> bool((values > 0).all() and (values <= 0.01).all())
        True
    """
    check_finite("radius", radius, minimum=0.0, exclusive=True)
    check_positive_int("n_samples", n_samples)
    check_positive_int("chunk_size", chunk_size)
    return _robustness_update(
        explain_fn,
        inputs,
        target,
        noise="uniform",
        scale=radius,
        n_samples=n_samples,
        seed=seed,
        chunk_size=chunk_size,
        denominator="explanation",
        additional_forward_args=additional_forward_args,
    ).float()


def local_lipschitz_estimate(
    explain_fn: ExplainFunc,
    inputs: Tensor,
    target: Tensor | int,
    *,
    std: float = 0.1,
    n_samples: int = 10,
    seed: int | None = 0,
    chunk_size: int = 256,
    additional_forward_args: object = None,
) -> Tensor:
    """Largest ratio of explanation change to input change under Gaussian noise; lower is better.

    Args:
        explain_fn: ``explain_fn(inputs, target) -> attributions``.
        inputs: ``(n, ...)`` inputs (not modified).
        target: class index per sample (or one int for all).
        std: standard deviation of the noise.
        n_samples: perturbed inputs per sample.
        seed: seed of the noise (``None``: the global generator).
        chunk_size: inputs per ``explain_fn`` call.
        additional_forward_args: further arguments of ``explain_fn`` (a value or a tuple);
            tensors with one row per sample follow their sample into the perturbed batches.

    Returns:
        ``(n,)`` values >= 0.

    Example:
        >>> explain = lambda x, t: 3.0 * x  # a 3-Lipschitz explanation
        >>> local_lipschitz_estimate(explain, torch.zeros(2, 5), 0)
        tensor([3., 3.])
    """
    check_finite("std", std, minimum=0.0, exclusive=True)
    check_positive_int("n_samples", n_samples)
    check_positive_int("chunk_size", chunk_size)
    return _robustness_update(
        explain_fn,
        inputs,
        target,
        noise="normal",
        scale=std,
        n_samples=n_samples,
        seed=seed,
        chunk_size=chunk_size,
        denominator="input",
        additional_forward_args=additional_forward_args,
    ).float()
