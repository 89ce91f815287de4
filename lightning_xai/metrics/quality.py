"""Explanation quality as ``torchmetrics`` metrics (DDP-reducible sums and counts).

Each class accumulates the per-sample values of its functional twin in
:mod:`lightning_xai.metrics.functional` and ``compute()`` returns their mean over every sample
seen (on every process); ``higher_is_better`` gives the score direction. Models and
explanation functions are held outside the metric's state (not moved by ``.to`` nor saved in
``state_dict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from lightning_xai.metrics.functional._quality import Baseline, ExplainFunc, ForwardFunc
from lightning_xai.metrics.functional.complexity import _complexity_update, _sparseness_update
from lightning_xai.metrics.functional.faithfulness import (
    Mode,
    Order,
    _check_curve_args,
    _faithfulness_correlation_update,
    higher_is_better,
    pixel_flipping,
    region_perturbation,
)
from lightning_xai.metrics.functional.localisation import (
    EmptyMask,
    _pointing_game_update,
    _relevance_mass_update,
    _relevance_rank_update,
)
from lightning_xai.metrics.functional.randomisation import (
    SIMILARITIES,
    LayerOrder,
    ModelExplainFunc,
    _parameter_randomisation_update,
    randomisable_layers,
)
from lightning_xai.metrics.functional.robustness import _robustness_update
from lightning_xai.utilities.validation import check_finite, check_positive_int

__all__ = [
    "Complexity",
    "FaithfulnessCorrelation",
    "LocalLipschitzEstimate",
    "MaxSensitivity",
    "ParameterRandomisation",
    "PixelFlipping",
    "PointingGame",
    "RegionPerturbation",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "Sparseness",
]


def _check_callable(name: str, value: object, signature: str) -> None:
    if not callable(value):
        raise TypeError(f"`{name}` must be callable ({signature}), got {type(value).__name__}.")


class _MeanMetric(Metric):
    """Mean of per-sample values: a float64 sum and a count, both summed across processes."""

    is_differentiable = False
    full_state_update = False

    value_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "value_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, values: Tensor) -> None:
        self.value_sum += values.to(self.value_sum.device, torch.float64).sum()
        self.count += len(values)

    def compute(self) -> Tensor:
        """Mean over every sample seen; NaN before the first update."""
        if int(self.count) == 0:
            return torch.tensor(float("nan"), device=self.value_sum.device)
        return (self.value_sum / self.count).float()


class Sparseness(_MeanMetric):
    """Mean Gini index of ``|attributions|``; higher is better (sparser).

    See :func:`~lightning_xai.metrics.functional.sparseness`.

    Example:
        >>> metric = Sparseness()
        >>> metric.update(torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
        >>> metric.compute()
        tensor(0.3750)
    """

    higher_is_better = True

    def update(self, attributions: Tensor) -> None:
        """Add a batch of attributions."""
        self._add(_sparseness_update(attributions))


class Complexity(_MeanMetric):
    """Mean entropy of the normalised ``|attributions|``; lower is better (simpler).

    See :func:`~lightning_xai.metrics.functional.complexity`.

    Example:
        >>> metric = Complexity()
        >>> metric.update(torch.tensor([[0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 1.0]]))
        >>> metric.compute()
        tensor(0.3466)
    """

    higher_is_better = False

    def update(self, attributions: Tensor) -> None:
        """Add a batch of attributions."""
        self._add(_complexity_update(attributions))


class _Localisation(_MeanMetric):
    higher_is_better = True

    def __init__(
        self, absolute: bool = True, empty_mask: EmptyMask = "raise", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if empty_mask not in ("raise", "zero"):
            raise ValueError(f"`empty_mask` must be 'raise' or 'zero', got {empty_mask!r}.")
        self.absolute = absolute
        self.empty_mask = empty_mask


class PointingGame(_Localisation):
    """Share of samples whose most relevant feature lies in the mask; higher is better.

    Args:
        absolute: rank by ``|attributions|`` (``True``) or by the signed value.
        empty_mask: ``"raise"`` or ``"zero"`` (scored as a miss, with a warning).

    See :func:`~lightning_xai.metrics.functional.pointing_game`.

    Example:
        >>> metric = PointingGame()
        >>> metric.update(torch.tensor([[0.1, 0.9], [0.9, 0.1]]), torch.tensor([[0, 1], [0, 1]]))
        >>> metric.compute()
        tensor(0.5000)
    """

    def update(self, attributions: Tensor, mask: Tensor) -> None:
        """Add a batch of attributions and their ground-truth masks."""
        self._add(_pointing_game_update(attributions, mask, self.absolute, self.empty_mask))


class RelevanceMassAccuracy(_Localisation):
    """Mean share of the relevance inside the mask; higher is better.

    Args:
        absolute: use ``|attributions|`` (``True``) or the signed value.
        empty_mask: ``"raise"`` or ``"zero"`` (scored 0, with a warning).

    See :func:`~lightning_xai.metrics.functional.relevance_mass_accuracy`.

    Example:
        >>> metric = RelevanceMassAccuracy()
        >>> metric.update(torch.tensor([[3.0, 1.0]]), torch.tensor([[1, 0]]))
        >>> metric.compute()
        tensor(0.7500)
    """

    def update(self, attributions: Tensor, mask: Tensor) -> None:
        """Add a batch of attributions and their ground-truth masks."""
        self._add(_relevance_mass_update(attributions, mask, self.absolute, self.empty_mask))


class RelevanceRankAccuracy(_Localisation):
    """Mean share of the ``|mask|`` most relevant features inside the mask; higher is better.

    Args:
        absolute: rank by ``|attributions|`` (``True``) or by the signed value.
        empty_mask: ``"raise"`` or ``"zero"`` (scored 0, with a warning).

    See :func:`~lightning_xai.metrics.functional.relevance_rank_accuracy`.

    Example:
        >>> metric = RelevanceRankAccuracy()
        >>> metric.update(torch.tensor([[0.9, 0.8, 0.1, 0.0]]), torch.tensor([[1, 0, 1, 0]]))
        >>> metric.compute()
        tensor(0.5000)
    """

    def update(self, attributions: Tensor, mask: Tensor) -> None:
        """Add a batch of attributions and their ground-truth masks."""
        self._add(_relevance_rank_update(attributions, mask, self.absolute, self.empty_mask))


class _ModelMetric(_MeanMetric):
    """Holds a callable outside the module tree (its weights are not metric state)."""

    def _hold(self, name: str, value: object, signature: str) -> None:
        _check_callable(name, value, signature)
        object.__setattr__(self, f"_{name}", value)


class PixelFlipping(_ModelMetric):
    """Mean AUC of deletion or insertion curves by feature.

    **Score direction**: deletion + ``"morf"`` (default): lower is better; insertion +
    ``"morf"``: higher is better (``metric.higher_is_better`` is set accordingly).

    Args:
        forward_func: ``forward_func(inputs) -> (n, num_classes)`` scores.
        mode, order, baseline, features_per_step, softmax, blur_sigma, chunk_size: as in
            :func:`~lightning_xai.metrics.functional.pixel_flipping`.

    Example:
        >>> weights = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
        >>> model = lambda x: torch.cat([x @ weights.T, -x @ weights.T], dim=1)
        >>> metric = PixelFlipping(model, softmax=False)
        >>> metric.update(torch.ones(2, 4), weights.expand(2, 4), torch.tensor([0, 0]))
        >>> metric.compute()
        tensor(1.7500)
    """

    def __init__(
        self,
        forward_func: ForwardFunc,
        mode: Mode = "deletion",
        order: Order = "morf",
        baseline: Baseline = 0.0,
        features_per_step: int = 1,
        softmax: bool = True,
        blur_sigma: float = 1.0,
        chunk_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._hold("forward_func", forward_func, "inputs -> (n, num_classes) scores")
        _check_curve_args(mode, order, features_per_step, chunk_size)
        self.options = {
            "mode": mode,
            "order": order,
            "baseline": baseline,
            "features_per_step": features_per_step,
            "softmax": softmax,
            "blur_sigma": blur_sigma,
            "chunk_size": chunk_size,
        }
        # an instance value: the direction depends on mode and order (torchmetrics guards the
        # class attribute against assignment)
        object.__setattr__(self, "higher_is_better", higher_is_better(mode, order))

    def update(
        self,
        inputs: Tensor,
        attributions: Tensor,
        target: Tensor | int,
        additional_forward_args: object = None,
    ) -> None:
        """Add a batch of inputs, their attributions and the explained classes (and further
        arguments of ``forward_func``, e.g. an adapted batch's extras)."""
        self._add(
            pixel_flipping(
                self._forward_func,  # type: ignore[attr-defined]
                inputs,
                attributions,
                target,
                additional_forward_args=additional_forward_args,
                **self.options,  # type: ignore[arg-type]
            ).auc
        )


class RegionPerturbation(_ModelMetric):
    """Mean AUC of deletion or insertion curves by square patch.

    **Score direction**: as :class:`PixelFlipping` (deletion + ``"morf"``: lower is better).

    Args:
        forward_func: ``forward_func(inputs) -> (n, num_classes)`` scores.
        patch_size, mode, order, baseline, regions, softmax, blur_sigma, chunk_size: as in
            :func:`~lightning_xai.metrics.functional.region_perturbation`.

    Example:
        >>> model = lambda x: torch.stack([x[:, 0, :2, :2].sum((1, 2)), x.sum((1, 2, 3))], 1)
        >>> attr = torch.zeros(1, 1, 4, 4)
        >>> attr[0, 0, :2, :2] = 1.0
        >>> metric = RegionPerturbation(model, patch_size=2, softmax=False)
        >>> metric.update(torch.ones(1, 1, 4, 4), attr, 0)
        >>> metric.compute()
        tensor(0.5000)
    """

    def __init__(
        self,
        forward_func: ForwardFunc,
        patch_size: int = 8,
        mode: Mode = "deletion",
        order: Order = "morf",
        baseline: Baseline = 0.0,
        regions: int | None = None,
        softmax: bool = True,
        blur_sigma: float = 1.0,
        chunk_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._hold("forward_func", forward_func, "inputs -> (n, num_classes) scores")
        _check_curve_args(mode, order, 1, chunk_size)
        check_positive_int("patch_size", patch_size)
        check_positive_int("regions", regions, allow_none=True)
        self.options = {
            "patch_size": patch_size,
            "mode": mode,
            "order": order,
            "baseline": baseline,
            "regions": regions,
            "softmax": softmax,
            "blur_sigma": blur_sigma,
            "chunk_size": chunk_size,
        }
        # an instance value: the direction depends on mode and order (torchmetrics guards the
        # class attribute against assignment)
        object.__setattr__(self, "higher_is_better", higher_is_better(mode, order))

    def update(
        self,
        inputs: Tensor,
        attributions: Tensor,
        target: Tensor | int,
        additional_forward_args: object = None,
    ) -> None:
        """Add a batch of inputs, their attributions and the explained classes (and further
        arguments of ``forward_func``, e.g. an adapted batch's extras)."""
        self._add(
            region_perturbation(
                self._forward_func,  # type: ignore[attr-defined]
                inputs,
                attributions,
                target,
                additional_forward_args=additional_forward_args,
                **self.options,  # type: ignore[arg-type]
            ).auc
        )


class FaithfulnessCorrelation(_ModelMetric):
    """Mean faithfulness correlation (Bhatt et al. 2020); higher is better.

    Every ``update`` draws its subsets from a generator seeded with ``seed`` (the same design
    for every batch, so the value does not depend on how data is split into batches of equal
    size).

    Args:
        forward_func: ``forward_func(inputs) -> (n, num_classes)`` scores.
        n_runs, subset_size, baseline, softmax, seed, chunk_size: as in
            :func:`~lightning_xai.metrics.functional.faithfulness_correlation`.

    Example:
        >>> w = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, 0.0]])
        >>> model = lambda x: torch.cat([x @ w.T, torch.zeros(len(x), 1)], dim=1)
        >>> metric = FaithfulnessCorrelation(model, subset_size=2, softmax=False)
        >>> metric.update(torch.ones(3, 6), w.expand(3, 6), 0)
        >>> metric.compute()
        tensor(1.)
    """

    higher_is_better = True

    def __init__(
        self,
        forward_func: ForwardFunc,
        n_runs: int = 100,
        subset_size: int | None = None,
        baseline: Baseline = 0.0,
        softmax: bool = True,
        seed: int | None = 0,
        chunk_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._hold("forward_func", forward_func, "inputs -> (n, num_classes) scores")
        check_positive_int("n_runs", n_runs)
        check_positive_int("subset_size", subset_size, allow_none=True)
        check_positive_int("chunk_size", chunk_size)
        self.options = {
            "n_runs": n_runs,
            "subset_size": subset_size,
            "baseline": baseline,
            "softmax": softmax,
            "seed": seed,
            "chunk_size": chunk_size,
        }

    def update(
        self,
        inputs: Tensor,
        attributions: Tensor,
        target: Tensor | int,
        additional_forward_args: object = None,
    ) -> None:
        """Add a batch of inputs, their attributions and the explained classes (and further
        arguments of ``forward_func``, e.g. an adapted batch's extras)."""
        self._add(
            _faithfulness_correlation_update(
                self._forward_func,  # type: ignore[attr-defined]
                inputs,
                attributions,
                target,
                additional_forward_args=additional_forward_args,
                **self.options,  # type: ignore[arg-type]
            )
        )


class _Robustness(_ModelMetric):
    higher_is_better = False
    _noise = "uniform"
    _denominator = "explanation"
    _scale_name = "radius"

    def __init__(
        self,
        explain_fn: ExplainFunc,
        scale: float,
        n_samples: int,
        seed: int | None,
        chunk_size: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._hold("explain_fn", explain_fn, "(inputs, target) -> attributions")
        check_finite(self._scale_name, scale, minimum=0.0, exclusive=True)
        check_positive_int("n_samples", n_samples)
        check_positive_int("chunk_size", chunk_size)
        self.scale, self.n_samples, self.seed, self.chunk_size = scale, n_samples, seed, chunk_size

    def update(
        self, inputs: Tensor, target: Tensor | int, additional_forward_args: object = None
    ) -> None:
        """Add a batch of inputs and the explained classes (and further ``explain_fn``
        arguments)."""
        self._add(
            _robustness_update(
                self._explain_fn,  # type: ignore[attr-defined]
                inputs,
                target,
                noise=self._noise,  # type: ignore[arg-type]
                scale=self.scale,
                n_samples=self.n_samples,
                seed=self.seed,
                chunk_size=self.chunk_size,
                denominator=self._denominator,  # type: ignore[arg-type]
                additional_forward_args=additional_forward_args,
            )
        )


class MaxSensitivity(_Robustness):
    """Mean max-sensitivity of explanations under uniform noise; lower is better.

    Args:
        explain_fn: ``explain_fn(inputs, target) -> attributions``.
        radius, n_samples, seed, chunk_size: as in
            :func:`~lightning_xai.metrics.functional.max_sensitivity`.

    Example:
        >>> metric = MaxSensitivity(lambda x, t: x**2, radius=0.01)
        >>> metric.update(torch.ones(4, 3), 0)
        >>> bool(0 < metric.compute() < 0.03)
        True
    """

    def __init__(
        self,
        explain_fn: ExplainFunc,
        radius: float = 0.02,
        n_samples: int = 10,
        seed: int | None = 0,
        chunk_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(explain_fn, radius, n_samples, seed, chunk_size, **kwargs)


class LocalLipschitzEstimate(_Robustness):
    """Mean local Lipschitz estimate of explanations under Gaussian noise; lower is better.

    Args:
        explain_fn: ``explain_fn(inputs, target) -> attributions``.
        std, n_samples, seed, chunk_size: as in
            :func:`~lightning_xai.metrics.functional.local_lipschitz_estimate`.

    Example:
        >>> metric = LocalLipschitzEstimate(lambda x, t: 3.0 * x)
        >>> metric.update(torch.zeros(2, 5), 0)
        >>> metric.compute()
        tensor(3.)
    """

    _noise = "normal"
    _denominator = "input"
    _scale_name = "std"

    def __init__(
        self,
        explain_fn: ExplainFunc,
        std: float = 0.1,
        n_samples: int = 10,
        seed: int | None = 0,
        chunk_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(explain_fn, std, n_samples, seed, chunk_size, **kwargs)


class ParameterRandomisation(Metric):
    """Model parameter randomisation test: mean similarity per randomised layer; lower is better.

    ``compute()`` returns ``{"spearman", "spearman_support", "ssim"}``, each a ``(layers,)``
    tensor of means over every sample seen, in the order of ``metric.layers``.

    Args:
        model: the trained model (never modified: copies are randomised).
        explain_fn: ``explain_fn(model, inputs, target) -> attributions``.
        layer_order, layers, seed: as in
            :func:`~lightning_xai.metrics.functional.parameter_randomisation`.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> def saliency(m, x, t):
        ...     x = x.clone().requires_grad_(True)
        ...     return torch.autograd.grad(m(x).gather(1, t[:, None]).sum(), x)[0]
        >>> metric = ParameterRandomisation(model, saliency)
        >>> metric.update(torch.rand(3, 4), torch.tensor([0, 1, 0]))
        >>> metric.layers, tuple(metric.compute()["ssim"].shape)
        (['2', '0'], (2,))
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    count: Tensor

    def __init__(
        self,
        model: nn.Module,
        explain_fn: ModelExplainFunc,
        layer_order: LayerOrder = "top_down",
        layers: Sequence[str] | None = None,
        seed: int = 43,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        _check_callable("explain_fn", explain_fn, "(model, inputs, target) -> attributions")
        if layer_order not in ("top_down", "bottom_up", "independent"):
            raise ValueError(
                "`layer_order` must be 'top_down', 'bottom_up' or 'independent', got "
                f"{layer_order!r}."
            )
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_explain_fn", explain_fn)
        available = randomisable_layers(model)
        chosen = available if layers is None else [n for n in available if n in set(layers)]
        if layers is not None and len(chosen) != len(set(layers)):
            raise ValueError(
                f"`layers`={list(layers)} names layers that cannot be randomised; choose from "
                f"{available}."
            )
        if not chosen:
            raise ValueError("the model has no layer with parameters and a `reset_parameters()`.")
        self.layers = chosen if layer_order == "bottom_up" else chosen[::-1]
        self.layer_order, self.seed = layer_order, seed
        for name in SIMILARITIES:
            self.add_state(
                f"{name}_sum",
                default=torch.zeros(len(self.layers), dtype=torch.float64),
                dist_reduce_fx="sum",
            )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, inputs: Tensor, target: Tensor | int) -> None:
        """Add a batch of inputs and the explained classes."""
        result = _parameter_randomisation_update(
            self._model,  # type: ignore[attr-defined]
            inputs,
            target,
            self._explain_fn,  # type: ignore[attr-defined]
            layer_order=self.layer_order,
            layers=self.layers,
            seed=self.seed,
            attributions=None,
            support=None,
        )
        for name, values in result.as_dict().items():
            state = getattr(self, f"{name}_sum")
            state += values.to(state.device, torch.float64).sum(1)
        self.count += len(inputs)

    def compute(self) -> dict[str, Tensor]:
        """Mean similarity per layer for each similarity (NaN before the first update)."""
        n = int(self.count)
        out = {}
        for name in SIMILARITIES:
            state = getattr(self, f"{name}_sum")
            out[name] = (state / n).float() if n else torch.full_like(state, float("nan")).float()
        return out
