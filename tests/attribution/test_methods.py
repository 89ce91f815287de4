from __future__ import annotations

import pytest
from captum.attr import (
    Attribution,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from lightning_xai.attribution import METHODS, get_submodule, method_spec, resolve_method
from tests.helpers import TinyCNN

REQUIRED = [
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "gradient_shap",
    "deeplift",
    "deeplift_shap",
    "occlusion",
    "feature_ablation",
    "shapley_value_sampling",
    "lime",
    "kernel_shap",
    "guided_backprop",
    "layer_grad_cam",
    "layer_conductance",
    "layer_integrated_gradients",
]


def test_every_required_method_is_listed() -> None:
    assert set(REQUIRED) <= set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_name_resolves_to_its_captum_class(name: str) -> None:
    model = TinyCNN().eval()
    spec = METHODS[name]
    layer = "features.0" if spec.needs_layer else None
    method = resolve_method(name, model, layer=layer)
    assert type(method) is spec.cls
    assert isinstance(method, Attribution)
    if spec.needs_layer:
        # the layer is the module at the path, not a copy
        inner = getattr(method, "layer", None) or method.grad_cam.layer
        assert inner is model.features[0]


def test_names_are_case_and_dash_insensitive() -> None:
    assert method_spec("Integrated-Gradients").cls is IntegratedGradients


def test_class_and_instance_are_accepted() -> None:
    model = TinyCNN()
    assert isinstance(resolve_method(Saliency, model), Saliency)
    configured = IntegratedGradients(model, multiply_by_inputs=False)
    assert resolve_method(configured, model) is configured
    assert method_spec(configured).name == "integrated_gradients"


def test_unknown_captum_subclass_inherits_the_spec() -> None:
    class MyIG(IntegratedGradients):
        pass

    spec = method_spec(MyIG)
    assert spec.cls is MyIG and spec.completeness == "exact" and spec.name == "my_i_g"


def test_unknown_name_names_the_value_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"method='gradcam'.*integrated_gradients"):
        method_spec("gradcam")


def test_non_method_type_is_rejected() -> None:
    with pytest.raises(TypeError, match="captum attribution class"):
        method_spec(nn.Linear)


def test_layer_method_without_layer_asks_for_one() -> None:
    with pytest.raises(ValueError, match=r"layer method.*layer='features.2'"):
        resolve_method("layer_grad_cam", TinyCNN())


def test_layer_given_to_input_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a layer method"):
        resolve_method("saliency", TinyCNN(), layer="features.0")


def test_missing_layer_path_lists_available_paths() -> None:
    with pytest.raises(ValueError, match=r"layer='features\.9'.*'features\.0'"):
        resolve_method("layer_grad_cam", TinyCNN(), layer="features.9")


def test_layer_path_may_skip_a_wrapping_child() -> None:
    wrapper = nn.ModuleDict({"model": TinyCNN()})
    assert get_submodule(wrapper, "features.0") is wrapper["model"].features[0]
    assert get_submodule(wrapper, "model.features.0") is wrapper["model"].features[0]


def test_ambiguous_short_path_is_rejected() -> None:
    wrapper = nn.ModuleDict({"a": TinyCNN(), "b": TinyCNN()})
    with pytest.raises(ValueError, match="ambiguous"):
        get_submodule(wrapper, "features.0")


def test_layer_module_instead_of_path() -> None:
    model = TinyCNN()
    method = resolve_method(LayerGradCam, model, layer=model.features[1])
    assert method.layer is model.features[1]


def test_noise_tunnel_instance_spec_is_the_inner_method() -> None:
    from lightning_xai.attribution.attributor import check_arguments

    assert check_arguments(NoiseTunnel(Saliency(TinyCNN()))).name == "saliency"
