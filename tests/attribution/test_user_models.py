"""Attributor on models and batches as users write them, compared with captum called directly."""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    FeatureAblation,
    IntegratedGradients,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from pytorch_lightning.demos.boring_classes import BoringModel
from torch import nn

from lightning_xai.attribution import AttributionConfig, Attributor
from lightning_xai.metrics.functional import completeness_gap
from lightning_xai.utilities.batches import BatchAdapter
from tests.user_models import (
    HFTextClassifier,
    RGBResNet,
    SignalNet,
    TabularNet,
    TwoInputNet,
    rgb_data,
    signal_data,
    tabular_data,
    token_data,
    two_input_data,
)

EMBEDDINGS = "bert.bert.embeddings.word_embeddings"


def _max_relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def text_model() -> HFTextClassifier:
    return HFTextClassifier().eval()


@pytest.fixture
def text_batch() -> dict[str, torch.Tensor]:
    return token_data(n=4, seed=3)


def test_bert_token_ids_match_captum_layer_integrated_gradients(text_model, text_batch) -> None:
    result = Attributor(
        text_model, "integrated_gradients", layer=EMBEDDINGS, method_kwargs={"n_steps": 16}
    ).attribute(text_batch)
    ids, mask = text_batch["input_ids"], text_batch["attention_mask"]
    with torch.no_grad():
        logits = text_model(ids, attention_mask=mask).logits
    assert torch.equal(result.targets, logits.argmax(1))

    def forward(input_ids, attention_mask):
        return text_model(input_ids, attention_mask=attention_mask).logits

    lig = LayerIntegratedGradients(forward, text_model.bert.bert.embeddings.word_embeddings)
    expected = (
        lig.attribute(
            ids,
            baselines=torch.zeros_like(ids),
            target=result.targets,
            additional_forward_args=(mask,),
            n_steps=16,
        ).sum(-1)
        * mask
    )
    assert result.attributions.shape == ids.shape
    assert _max_relative(result.attributions, expected) <= 1e-4
    assert torch.equal(result.mask, mask.bool())
    assert (result.attributions[mask == 0] == 0).all() and (mask == 0).any()
    assert result.relative_completeness_gap < 0.02  # sums to f(ids) - f(pad ids), mask kept


def test_token_ids_without_layer_name_the_embeddings(text_model, text_batch) -> None:
    with pytest.raises(
        ValueError, match=r"set `layer=`.*'bert\.bert\.embeddings\.word_embeddings'"
    ):
        Attributor(text_model, "integrated_gradients").attribute(text_batch)
    with pytest.raises(ValueError, match=r"cannot explain integer token ids.*feature_ablation"):
        Attributor(text_model, "guided_backprop").attribute(text_batch)


def test_saliency_on_token_ids_is_the_embedding_gradient(text_model, text_batch) -> None:
    result = Attributor(text_model, "saliency", layer=EMBEDDINGS).attribute(text_batch)
    ids, mask = text_batch["input_ids"], text_batch["attention_mask"]
    layer = text_model.bert.bert.embeddings.word_embeddings
    grads = LayerGradientXActivation(
        lambda i, m: text_model(i, attention_mask=m).logits, layer, multiply_by_inputs=False
    ).attribute(ids, target=result.targets, additional_forward_args=(mask,))
    assert _max_relative(result.attributions, grads.abs().sum(-1) * mask) <= 1e-4


def test_perturbation_methods_work_on_token_ids_with_a_pad_baseline(text_model, text_batch):
    result = Attributor(text_model, "feature_ablation").attribute(text_batch)
    ids, mask = text_batch["input_ids"], text_batch["attention_mask"]
    expected = FeatureAblation(lambda i, m: text_model(i, attention_mask=m).logits).attribute(
        ids, baselines=0, target=result.targets, additional_forward_args=(mask,)
    )
    assert _max_relative(result.attributions, expected * mask) <= 1e-4


def test_rgb_resnet_with_batchnorm_matches_captum() -> None:
    model = RGBResNet().eval()
    x, y = rgb_data(n=4).tensors
    result = Attributor(model, "integrated_gradients", method_kwargs={"n_steps": 16}).attribute(
        (x, y)
    )
    expected = IntegratedGradients(model).attribute(x, target=result.targets, n_steps=16)
    assert result.attributions.shape == (4, 3, 12, 10)
    assert _max_relative(result.attributions, expected) <= 1e-4
    assert result.heatmaps().shape == (4, 12, 10)


def test_two_inputs_explained_together_match_captum_tuples() -> None:
    model = TwoInputNet().eval()
    image, features, y = two_input_data(n=6).tensors
    adapter = BatchAdapter(inputs=(0, 1), labels=2)
    result = Attributor(model, "integrated_gradients", adapter=adapter, target="label").attribute(
        (image, features, y)
    )
    assert isinstance(result.attributions, tuple) and len(result.attributions) == 2
    assert torch.equal(result.targets, y)
    expected = IntegratedGradients(model).attribute((image, features), target=y, n_steps=50)
    for ours, theirs in zip(result.attributions, expected):
        assert _max_relative(ours, theirs) <= 1e-4
    # completeness over both inputs: sum of all attributions = f(x) - f(0)
    assert result.relative_completeness_gap < 0.02
    with torch.no_grad():
        delta = model(image, features) - model(torch.zeros_like(image), torch.zeros_like(features))
    torch.testing.assert_close(result.output_delta, delta.gather(1, y[:, None])[:, 0])
    summed = sum(a.flatten(1).sum(1) for a in result.attributions)
    by_hand = (summed - result.output_delta).abs().sum() / result.output_delta.abs().sum()
    assert float(completeness_gap(result.attributions, result.output_delta)) == pytest.approx(
        float(by_hand), rel=1e-5
    )


def test_default_adapter_passes_the_second_input_to_the_forward() -> None:
    model = TwoInputNet().eval()
    image, features, y = two_input_data(n=16).tensors
    result = Attributor(model, "integrated_gradients").attribute((image, features, y))
    assert isinstance(result.attributions, torch.Tensor)
    expected = IntegratedGradients(model).attribute(
        image, target=result.targets, additional_forward_args=(features,)
    )
    assert _max_relative(result.attributions, expected) <= 1e-4
    # the explained class and f(x) - f(0) come from model(image, features), not model(image)
    with torch.no_grad():
        with_features = model(image, features)
        without = model(image, None)
    assert torch.equal(result.targets, with_features.argmax(1))
    assert not torch.equal(result.targets, without.argmax(1))
    delta = with_features - model(torch.zeros_like(image), features)
    torch.testing.assert_close(
        result.output_delta, delta.gather(1, result.targets[:, None])[:, 0].detach()
    )


@pytest.mark.parametrize(
    ("model", "data"),
    [(SignalNet(), signal_data(n=5)), (TabularNet(), tabular_data(n=5))],
    ids=["signal", "tabular"],
)
def test_signals_and_tabular_rows_match_captum(model: nn.Module, data) -> None:
    model.eval()
    x, y = data.tensors
    result = Attributor(model, "integrated_gradients", target="label").attribute((x, y))
    expected = IntegratedGradients(model).attribute(x, target=y)
    assert _max_relative(result.attributions, expected) <= 1e-4
    assert result.heatmaps().shape == (5, x.shape[-1])


def test_lightning_boring_model_tensor_batches() -> None:
    model = BoringModel().eval()
    x = torch.randn(4, 32)
    result = Attributor(model, "integrated_gradients").attribute(x)
    expected = IntegratedGradients(model).attribute(x, target=model(x).argmax(1))
    assert _max_relative(result.attributions, expected) <= 1e-4


def test_labels_out_of_range_are_checked_before_use() -> None:
    model = TabularNet().eval()
    x, _ = tabular_data(n=4).tensors
    with pytest.raises(ValueError, match=r"target='label'.*up to 4.*\[0, 1\]"):
        Attributor(model, "saliency", target="label").attribute((x, torch.tensor([0, 1, 4, 0])))


def test_config_is_shared_validated_and_overridable() -> None:
    config = AttributionConfig("integrated_gradients", method_kwargs={"n_steps": 4})
    model = TabularNet().eval()
    attributor = Attributor(model, config, target=1)
    assert attributor.config.target == 1 and config.target is None
    assert attributor.config.method_kwargs == {"n_steps": 4}
    with pytest.raises(ValueError, match=r"method_kwargs=\{'n_steps': 0\}.*positive integer"):
        config.replace(method_kwargs={"n_steps": 0})
    with pytest.raises(TypeError, match=r"unknown arguments \['steps'\]"):
        Attributor(model, config, steps=3)
    with pytest.raises(ValueError, match=r"blur_sigma"):
        AttributionConfig(blur_sigma=-1.0)


def test_captum_assertions_become_errors_naming_method_kwargs() -> None:
    model = RGBResNet().eval()
    x = torch.rand(2, 3, 12, 10)
    attributor = Attributor(model, "occlusion", method_kwargs={"sliding_window_shapes": (3, 3)})
    with pytest.raises(ValueError, match=r"method_kwargs=\{'sliding_window_shapes': \(3, 3\)\}"):
        attributor.attribute(x)


def test_config_dict_round_trip_records_every_field() -> None:
    from captum.attr import Saliency

    net = TabularNet()
    config = AttributionConfig(
        Saliency, baseline=torch.tensor([0.5] * 5), method_kwargs={"abs": False}, nt_stdevs=0.3
    )
    recorded = config.to_dict()
    assert recorded["method"] == "saliency" and recorded["nt_stdevs"] == 0.3
    assert set(recorded) == set(AttributionConfig.field_names())
    rebuilt = AttributionConfig.from_dict({**recorded, "unrelated": 1})
    assert rebuilt.spec.name == "saliency" and torch.equal(rebuilt.baseline, config.baseline)
    layer = AttributionConfig("layer_grad_cam", layer=net.net[0]).to_dict(net)
    assert layer["layer"] == "net.0" and AttributionConfig.from_dict(layer).layer == "net.0"
    with pytest.raises(ValueError, match="module given without its model"):
        AttributionConfig.from_dict(AttributionConfig("layer_grad_cam", layer=net.net[0]).to_dict())
