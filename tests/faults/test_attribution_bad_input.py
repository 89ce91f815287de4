"""Bad input to every public attribution entry point (AttributionConfig, Attributor,
AttributionLogger) ends in a clear error of the right type whose message names the argument,
before anything is computed."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_xai.attribution import AttributionConfig, Attributor, NonFiniteInputError
from lightning_xai.callbacks import AttributionLogger
from lightning_xai.utilities.batches import BatchAdapter

NAN, INF = math.nan, math.inf


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


# (arguments, error type, what the message must contain: the argument's name and the value)
CONSTRUCTOR_CASES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"method": "no_such_method"}, ValueError, r"method='no_such_method'"),
    ({"nt_stdevs": NAN, "noise_tunnel": "smoothgrad"}, ValueError, r"`nt_stdevs`.*nan"),
    ({"nt_stdevs": -0.1}, ValueError, r"`nt_stdevs`.*>= 0.*-0\.1"),
    ({"nt_stdevs": INF}, ValueError, r"`nt_stdevs`.*inf"),
    ({"nt_samples": 0}, ValueError, r"`nt_samples`.*0"),
    ({"completeness_threshold": NAN}, ValueError, r"`completeness_threshold`.*nan"),
    ({"completeness_threshold": INF}, ValueError, r"`completeness_threshold`.*inf"),
    ({"completeness_threshold": 0.0}, ValueError, r"`completeness_threshold`.*> 0"),
    ({"blur_sigma": NAN, "baseline": "blur"}, ValueError, r"`blur_sigma`.*nan"),
    ({"blur_sigma": -1.0, "baseline": "blur"}, ValueError, r"`blur_sigma`.*-1\.0"),
    ({"baseline": NAN}, ValueError, r"`baseline=nan` must be finite"),
    ({"baseline": INF}, ValueError, r"`baseline=inf` must be finite"),
    ({"baseline": "noise"}, ValueError, r"`baseline='noise'`"),
    ({"baseline": torch.tensor([[NAN, 0.0]])}, ValueError, r"`baseline` is a tensor.*1 NaN"),
    ({"baseline": (0.0, INF)}, ValueError, r"`baseline=inf`"),
    ({"baseline": ()}, ValueError, r"`baseline=\(\)` is empty"),
    ({"baseline": [0.0]}, TypeError, r"`baseline`.*list"),
    ({"method_kwargs": {"n_steps": 0}}, ValueError, r"n_steps.*positive integer"),
    ({"method_kwargs": {"n_steps": 2.5}}, ValueError, r"n_steps.*positive integer"),
    (
        {"method": "gradient_shap", "method_kwargs": {"stdevs": NAN}},
        ValueError,
        r"method_kwargs.*'stdevs'.*nan",
    ),
    ({"method_kwargs": {"target": 1}}, ValueError, r"`method_kwargs` must not contain 'target'"),
    ({"method_kwargs": [("n_steps", 4)]}, TypeError, r"`method_kwargs` must be a mapping"),
    ({"internal_batch_size": 0}, ValueError, r"`internal_batch_size`.*0"),
    ({"target": -1}, ValueError, r"`target=-1`"),
    ({"target": 1.5}, TypeError, r"`target`.*float"),
    ({"target": torch.tensor([0.5])}, ValueError, r"`target`.*floating-point"),
    ({"target": torch.tensor([1, -2])}, ValueError, r"`target`.*negative.*-2"),
    ({"target": "predicted"}, ValueError, r"`target='predicted'`"),
    ({"label_free": True, "target": 1}, ValueError, r"`target=1`.*label_free=True"),
    ({"label_free": "yes"}, TypeError, r"`label_free`.*'yes'"),
    ({"check_hooks": 1}, TypeError, r"`check_hooks`.*1"),
    ({"noise_tunnel": "blur"}, ValueError, r"`noise_tunnel='blur'`"),
    ({"method": "layer_grad_cam"}, ValueError, r"needs `layer`"),
    ({"method": "occlusion", "layer": "1"}, ValueError, r"`layer='1'`.*not a layer method"),
]


def _ids(cases: list[tuple[dict[str, Any], type[Exception], str]]) -> list[str]:
    return ["-".join(f"{k}={v!r}"[:30] for k, v in kwargs.items()) for kwargs, _, _ in cases]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"), CONSTRUCTOR_CASES, ids=_ids(CONSTRUCTOR_CASES)
)
def test_attribution_config_rejects(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        AttributionConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"), CONSTRUCTOR_CASES, ids=_ids(CONSTRUCTOR_CASES)
)
def test_attributor_rejects(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        Attributor(_net(), **kwargs)


LOGGER_ONLY: list[tuple[dict[str, Any], str]] = [
    ({"scale": "row"}, r"`scale='row'`.*'tile'.*'shared'"),
    ({"strict": "yes"}, r"`strict` must be True or False.*'yes'"),
    ({"verbose": 1}, r"`verbose` must be True or False"),
    ({"infidelity": None}, r"`infidelity` must be True or False"),
    ({"seed": 1.5}, r"`seed` must be an integer.*1\.5"),
    ({"num_samples": 0}, r"`num_samples`.*0"),
    ({"every_n_epochs": 0}, r"`every_n_epochs`.*0"),
    ({"top_k": 0}, r"`top_k`.*0"),
    ({"mean_samples": -1}, r"`mean_samples`.*-1"),
    ({"feature_names": "age"}, r"`feature_names`.*'age'"),
    ({"adapter": "tuple"}, r"`adapter` must be a BatchAdapter"),
    ({"forward_fn": ""}, r"`forward_fn`.*''"),
    ({"vocabulary": 3}, r"`vocabulary`.*int"),
    ({"name": "a/b"}, r"`name`.*'a/b'"),
    ({"stages": ("train",)}, r"`stages`.*'train'"),
]

LOGGER_CASES = [
    (kwargs, match)
    for kwargs, _, match in CONSTRUCTOR_CASES
    if "layer" not in kwargs and not isinstance(kwargs.get("target"), torch.Tensor)
] + LOGGER_ONLY


@pytest.mark.parametrize(
    ("kwargs", "match"), LOGGER_CASES, ids=[str(k)[:40] for k, _ in LOGGER_CASES]
)
def test_attribution_logger_rejects(kwargs, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        AttributionLogger(**kwargs)


# Bad batches: rejected by Attributor.attribute before anything is computed.
def _nan_row(n: int, row: int) -> torch.Tensor:
    x = torch.rand(n, 1, 2, 2)
    x[row, 0, 1, 0] = NAN
    return x


BATCH_CASES: list[tuple[Callable[[], Attributor], Any, type[Exception], str]] = [
    (
        lambda: Attributor(_net(), "integrated_gradients"),
        _nan_row(5, 3),
        NonFiniteInputError,
        r"the explained input holds NaN or inf in 1 of 5 examples, first at row 3",
    ),
    (
        lambda: Attributor(_net(), "saliency"),
        (_nan_row(4, 2) * INF, torch.tensor([0, 1, 2, 0])),
        NonFiniteInputError,
        r"in 4 of 4 examples, first at row 0",
    ),
    (
        lambda: Attributor(_net(), "saliency", adapter=BatchAdapter(inputs="pixels")),
        {"pixels": _nan_row(3, 1), "labels": torch.tensor([0, 1, 2])},
        NonFiniteInputError,
        r"explained input 'pixels'.*first at row 1",
    ),
    (
        lambda: Attributor(_net(), "integrated_gradients"),
        torch.rand(0, 1, 2, 2),
        ValueError,
        r"batch is empty \(0 examples\)",
    ),
    (
        lambda: Attributor(_net(), "integrated_gradients"),
        torch.rand(4),
        ValueError,
        r"`inputs` must be a batch tensor",
    ),
    (
        lambda: Attributor(_net(), "saliency", target="label"),
        (torch.rand(2, 1, 2, 2), torch.tensor([0, 7])),
        ValueError,
        r"target='label'.*7",
    ),
    (
        lambda: Attributor(_net(), "saliency", target=5),
        torch.rand(2, 1, 2, 2),
        ValueError,
        r"`target` holds class indices \[5\].*3 outputs",
    ),
]


@pytest.mark.parametrize(
    ("make", "batch", "error", "match"),
    BATCH_CASES,
    ids=[
        "nan-row",
        "inf-tuple",
        "nan-dict-key",
        "empty",
        "no-batch-dim",
        "label-range",
        "target-range",
    ],
)
def test_attribute_rejects_bad_batches_before_computing(make, batch, error, match) -> None:
    attributor = make()
    with pytest.raises(error, match=match):
        attributor.attribute(batch)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(4, 3)
        self.features = nn.Linear(2, 3)

    def forward(self, image: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        out = self.image(image.flatten(1))
        return out if features is None else out + self.features(features)


def test_non_finite_further_model_argument_is_named() -> None:
    features = torch.rand(3, 2)
    features[2, 1] = INF
    batch = (torch.rand(3, 1, 2, 2), features, torch.tensor([0, 1, 2]))
    with pytest.raises(NonFiniteInputError, match=r"further model argument 0.*first at row 2"):
        Attributor(_TwoInputs(), "saliency").attribute(batch)


def test_mean_baseline_of_non_finite_training_data_is_refused() -> None:
    data = torch.rand(8, 1, 2, 2)
    data[5] = NAN
    attributor = Attributor(_net(), "integrated_gradients", baseline="mean")
    with pytest.raises(NonFiniteInputError, match=r"baseline='mean'.*NaN or inf in 4 of 4"):
        attributor.fit_baseline(data)
    assert attributor.mean_baseline is None


def test_mean_baseline_of_constant_data_gives_zero_attributions_without_nan() -> None:
    """The degenerate case that is fine: every input equals the mean, nothing to attribute."""
    x = torch.full((6, 1, 2, 2), 0.3)
    attributor = Attributor(_net(), "integrated_gradients", baseline="mean").fit_baseline(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no completeness or non-finite warning either
        result = attributor.attribute(x)
    assert result.non_finite() == []
    assert torch.equal(result.attributions, torch.zeros_like(x))
    assert result.relative_completeness_gap == 0.0


def test_non_finite_weights_give_a_flagged_result_naming_the_parameter() -> None:
    from lightning_xai.attribution import NonFiniteAttributionWarning

    net = _net()
    with torch.no_grad():
        net[1].weight[0, 2] = NAN
    attributor = Attributor(net, "integrated_gradients")
    with pytest.warns(
        NonFiniteAttributionWarning, match=r"4 of 4 examples.*'1\.weight' is not finite"
    ) as caught:
        result = attributor.attribute(torch.rand(4, 1, 2, 2))
        attributor.attribute(torch.rand(4, 1, 2, 2))  # warned once
    assert len(caught) == 1
    assert result.non_finite() == ["attributions", "output_delta"]
