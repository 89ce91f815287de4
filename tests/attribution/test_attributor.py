from __future__ import annotations

import warnings

import pytest
import torch
from captum.attr import DeepLift, GuidedBackprop, IntegratedGradients, Occlusion, Saliency
from torch import nn

from lightning_xai.attribution import METHODS, AttributionWarning, Attributor
from tests.attribution.models import FunctionalMLP, ModuleMLP, ReusedMLP, twin
from tests.helpers import TinyCNN

# cheap settings so that every method runs in well under a second
CHEAP = {
    "occlusion": {"sliding_window_shapes": (1, 4, 4), "strides": (1, 4, 4)},
    "shapley_value_sampling": {
        "n_samples": 2,
        "feature_mask": "coarse",
        "perturbations_per_eval": 16,
    },
    "lime": {"n_samples": 10, "feature_mask": "coarse"},
    "kernel_shap": {"n_samples": 10, "feature_mask": "coarse"},
    "feature_ablation": {"feature_mask": "coarse"},
    "feature_permutation": {"feature_mask": "coarse"},
    "layer_feature_ablation": {"layer_mask": "layer"},
}


def _coarse_mask() -> torch.Tensor:
    """16 features of 2x2 pixels on an 8x8 image."""
    return torch.arange(16).reshape(1, 1, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)


def _cheap_kwargs(name: str) -> dict:
    kwargs = dict(CHEAP.get(name, {}))
    if kwargs.get("feature_mask") == "coarse":
        kwargs["feature_mask"] = _coarse_mask()
    if kwargs.get("layer_mask") == "layer":
        kwargs["layer_mask"] = torch.arange(4).reshape(1, 4, 1, 1)
    return kwargs


@pytest.fixture
def cnn() -> nn.Module:
    return TinyCNN().eval()


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"lrp", "layer_lrp"}))
def test_every_method_runs_on_a_cnn(name: str, cnn: nn.Module) -> None:
    spec = METHODS[name]
    attributor = Attributor(
        cnn,
        name,
        layer="features.0" if spec.needs_layer else None,
        method_kwargs=_cheap_kwargs(name),
        completeness_threshold=None,
    )
    x = torch.rand(2, 1, 8, 8)
    result = attributor.attribute(x)
    assert result.attributions.shape[0] == 2
    assert torch.isfinite(result.attributions).all()
    assert result.heatmaps().shape == (2, 8, 8)
    assert torch.equal(result.targets, cnn(x).argmax(1))
    assert (result.output_delta is not None) == (spec.completeness != "none")


def test_lrp_explains_which_layer_has_no_rule(cnn: nn.Module) -> None:
    with pytest.raises(TypeError, match=r"no LRP rule.*choose another method"):
        Attributor(cnn, "lrp").attribute(torch.rand(2, 1, 8, 8))


def test_linear_model_integrated_gradients_are_exact() -> None:
    linear = nn.Linear(5, 3)
    x, baseline = torch.randn(4, 5), torch.randn(5)
    result = Attributor(linear, "integrated_gradients", baseline=baseline, target=2).attribute(x)
    expected = linear.weight[2].detach() * (x - baseline)
    torch.testing.assert_close(result.attributions, expected, rtol=1e-5, atol=1e-6)
    assert result.relative_completeness_gap < 1e-5


@pytest.mark.filterwarnings("ignore:Setting .*hooks")
@pytest.mark.parametrize(
    ("name", "cls", "kwargs"),
    [
        ("integrated_gradients", IntegratedGradients, {"baselines": torch.zeros(1, 1, 8, 8)}),
        ("saliency", Saliency, {}),
        ("deeplift", DeepLift, {"baselines": torch.zeros(1, 1, 8, 8)}),
        ("guided_backprop", GuidedBackprop, {}),
        (
            "occlusion",
            Occlusion,
            {
                "sliding_window_shapes": (1, 2, 2),
                "strides": (1, 2, 2),
                "baselines": torch.zeros(1, 1, 8, 8),
            },
        ),
    ],
)
def test_same_as_calling_captum_directly(name, cls, kwargs, cnn: nn.Module) -> None:
    x = torch.rand(4, 1, 8, 8)
    target = cnn(x).argmax(1)
    expected = cls(cnn).attribute(x.clone().requires_grad_(), target=target, **kwargs)
    method_kwargs = {k: v for k, v in kwargs.items() if k != "baselines"}
    ours = Attributor(cnn, name, method_kwargs=method_kwargs, completeness_threshold=None)
    ours = ours.attribute(x).attributions
    torch.testing.assert_close(ours, expected.detach(), rtol=1e-5, atol=1e-6)


def test_targets_pred_label_fixed_and_tensor(cnn: nn.Module) -> None:
    x, labels = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    assert torch.equal(Attributor(cnn, "saliency").attribute(x).targets, cnn(x).argmax(1))
    assert torch.equal(
        Attributor(cnn, "saliency", target="label").attribute(x, labels).targets, labels
    )
    assert Attributor(cnn, "saliency", target=7).attribute(x).targets.tolist() == [7] * 5
    fixed = Attributor(cnn, "saliency", target=labels.flip(0)).attribute(x).targets
    assert fixed.tolist() == [4, 3, 2, 1, 0]
    by_class = [Attributor(cnn, "saliency", target=c).attribute(x).attributions for c in (1, 2)]
    assert not torch.allclose(*by_class)


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        ("predicted", ValueError, r"target='predicted'.*'pred', 'label'"),
        (-1, ValueError, "class index >= 0"),
        (1.5, TypeError, "must be 'pred', 'label'"),
        (torch.tensor([0.5]), ValueError, "integer class indices"),
    ],
)
def test_bad_target_fails_at_init(target, error, match, cnn: nn.Module) -> None:
    with pytest.raises(error, match=match):
        Attributor(cnn, "saliency", target=target)


def test_target_out_of_range_fails_before_attribution(cnn: nn.Module) -> None:
    attributor = Attributor(cnn, "integrated_gradients", target=10)
    with pytest.raises(ValueError, match=r"class indices \[10\].*10 outputs"):
        attributor.attribute(torch.rand(2, 1, 8, 8))


def test_label_target_needs_labels(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"target='label'.*attribute\(inputs, labels\)"):
        Attributor(cnn, "saliency", target="label").attribute(torch.rand(2, 1, 8, 8))


def test_target_shape_is_checked(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"one class index per example, shape \(3,\)"):
        Attributor(cnn, "saliency", target=torch.tensor([1, 2])).attribute(torch.rand(3, 1, 8, 8))


def test_inputs_without_batch_dimension_are_rejected(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match="unsqueeze"):
        Attributor(cnn, "saliency").attribute(torch.rand(8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"internal_batch_size": 8}, "not accepted by `method='saliency'`"),
        ({"method_kwargs": {"n_steps": 4}}, "key 'n_steps' is not an argument of Saliency"),
        ({"method_kwargs": {"target": 1}}, "set through `target=`"),
        ({"noise_tunnel": "smooth"}, "noise_tunnel='smooth'"),
        ({"baseline": "noise"}, "baseline='noise'"),
        ({"completeness_threshold": 0}, "completeness_threshold"),
        ({"layer": "features.0"}, "not a layer method"),
    ],
)
def test_bad_arguments_fail_at_init(kwargs, match, cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=match):
        Attributor(cnn, "saliency", **kwargs)


def test_bad_layer_path_fails_at_init(cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"layer='features\.7'.*Use one of"):
        Attributor(cnn, "layer_grad_cam", layer="features.7")


def test_internal_batch_size_is_passed_through_and_changes_nothing(cnn: nn.Module) -> None:
    x = torch.rand(4, 1, 8, 8)
    full = Attributor(cnn, "integrated_gradients").attribute(x).attributions
    chunked = Attributor(cnn, "integrated_gradients", internal_batch_size=12).attribute(x)
    torch.testing.assert_close(chunked.attributions, full, rtol=1e-4, atol=1e-6)


def test_noise_tunnel_without_noise_equals_the_method(cnn: nn.Module) -> None:
    x = torch.rand(3, 1, 8, 8)
    plain = Attributor(cnn, "saliency").attribute(x)
    tunnel = Attributor(cnn, "saliency", noise_tunnel="smoothgrad", nt_stdevs=0.0, nt_samples=3)
    result = tunnel.attribute(x)
    assert result.method == "smoothgrad(saliency)"
    torch.testing.assert_close(result.attributions, plain.attributions)
    noisy = Attributor(cnn, "saliency", noise_tunnel="smoothgrad", nt_stdevs=0.3).attribute(x)
    assert not torch.allclose(noisy.attributions, plain.attributions)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_works_without_gradients_enabled(context, cnn: nn.Module) -> None:
    x = torch.rand(3, 1, 8, 8)
    expected = Attributor(cnn, "integrated_gradients").attribute(x).attributions
    with context():
        x_ctx = x.clone()
        result = Attributor(cnn, "integrated_gradients").attribute(x_ctx)
    torch.testing.assert_close(result.attributions, expected)


def test_functional_activations_warn_for_deeplift_and_the_gap_shows_it() -> None:
    good = ModuleMLP().eval()
    bad = twin(FunctionalMLP, good)
    x = torch.randn(16, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = Attributor(good, "deeplift").attribute(x)
    assert ok.relative_completeness_gap < 1e-4
    with pytest.warns(AttributionWarning, match=r"functional activations.*nn\.ReLU\(\)"):
        wrong = Attributor(bad, "deeplift", completeness_threshold=None).attribute(x)
    # same weights, same function, different (wrong) attributions
    torch.testing.assert_close(bad(x), good(x))
    assert wrong.relative_completeness_gap > 100 * max(ok.relative_completeness_gap, 1e-6)


def test_gap_above_threshold_warns_once_with_the_fix() -> None:
    bad = twin(FunctionalMLP, ModuleMLP())
    attributor = Attributor(bad, "deeplift", check_hooks=False, completeness_threshold=1e-3)
    x = torch.randn(16, 6)
    with pytest.warns(AttributionWarning, match=r"miss f\(x\) - f\(baseline\).*one per use"):
        attributor.attribute(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attributor.attribute(x)  # warned once per attributor


def test_coarse_integral_warns_to_raise_n_steps(cnn: nn.Module) -> None:
    torch.manual_seed(1)
    attributor = Attributor(
        ModuleMLP(6, 64, 3),
        "integrated_gradients",
        method_kwargs={"n_steps": 2, "method": "riemann_left"},
        completeness_threshold=1e-3,
    )
    with pytest.warns(AttributionWarning, match="n_steps"):
        result = attributor.attribute(torch.randn(8, 6) * 3)
    assert result.relative_completeness_gap > 1e-3


def test_reused_activation_raises_for_deeplift_with_the_fix() -> None:
    model = twin(ReusedMLP, ModuleMLP())
    with pytest.raises(ValueError, match=r"used more than once \(act1\).*one per use"):
        Attributor(model, "deeplift").attribute(torch.randn(2, 6))
    # without the pre-check, captum's own error is turned into the same advice
    with pytest.raises(RuntimeError, match=r"used more than once.*nn\.ReLU\(\)"):
        Attributor(model, "deeplift", check_hooks=False).attribute(torch.randn(2, 6))


def test_guided_backprop_warns_about_functional_relu() -> None:
    bad = twin(FunctionalMLP, ModuleMLP())
    with pytest.warns(AttributionWarning, match="guided_backprop"):
        Attributor(bad, "guided_backprop").attribute(torch.randn(2, 6))


def test_infidelity_and_sensitivity(cnn: nn.Module) -> None:
    attributor = Attributor(cnn, "saliency")
    result = attributor.attribute(torch.rand(3, 1, 8, 8))
    infid = attributor.infidelity(result, n_perturb_samples=4)
    sens = attributor.sensitivity(result, n_perturb_samples=2)
    assert infid.shape == sens.shape == (3,)
    assert (infid >= 0).all() and (sens >= 0).all()
    layer = Attributor(cnn, "layer_grad_cam", layer="features.0")
    with pytest.raises(ValueError, match="input attribution method"):
        layer.infidelity(layer.attribute(torch.rand(2, 1, 8, 8)))


def test_forward_fn_explains_another_function(cnn: nn.Module) -> None:
    x = torch.rand(3, 1, 8, 8)

    def probabilities(inputs):
        return cnn(inputs).softmax(-1)

    result = Attributor(cnn, "saliency", forward_fn=probabilities).attribute(x)
    logits = Attributor(cnn, "saliency").attribute(x)
    assert torch.equal(result.targets, logits.targets)
    assert not torch.allclose(result.attributions, logits.attributions)
