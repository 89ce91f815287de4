"""Label-free attribution: every expanded copy of x_n must meet its own f(x_n)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from lightning_xai.attribution import Attributor, LabelFreeOutput, latent_leaves


class TupleEncoder(nn.Module):
    """A non-linear encoder returning a tuple: a vector and a small feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.Tanh()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.pool(self.act(self.conv(x)))
        return self.head(fmap.flatten(1)), fmap


def _linear_encoder() -> nn.Module:
    # the gradient of <W x, W x0> does not depend on x: sampling methods become exact
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))


def _per_example(attributor: Attributor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([attributor.attribute(x[i : i + 1]).attributions for i in range(len(x))])


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("gradient_shap", {"method_kwargs": {"n_samples": 6}}),
        ("gradient_shap", {"baseline": torch.rand(1, 1, 8, 8)}),
        ("saliency", {"noise_tunnel": "smoothgrad", "nt_samples": 5, "nt_stdevs": 0.3}),
        ("saliency", {"noise_tunnel": "smoothgrad_sq", "nt_samples": 4, "nt_stdevs": 0.3}),
    ],
)
def test_sampling_methods_match_a_per_example_loop(method: str, kwargs: dict) -> None:
    """Random draws differ between a batch and a loop, so the encoder is linear: the gradient
    of <W x, W x0> is W^T W x0 wherever it is taken, and only the pairing with x0 matters."""
    encoder = _linear_encoder()
    attributor = Attributor(encoder, method, label_free=True, **kwargs)
    x = torch.rand(6, 1, 8, 8)
    batched = attributor.attribute(x).attributions
    looped = _per_example(attributor, x)
    assert _relative(batched, looped) < 1e-5


def test_wrong_pairing_would_be_detected() -> None:
    """Tiling f(x0) (instead of following captum's repeat_interleave) gives other numbers."""
    encoder = _linear_encoder()
    x = torch.rand(6, 1, 8, 8)
    looped = _per_example(Attributor(encoder, "gradient_shap", label_free=True), x)
    refs = encoder(x).detach()
    n_samples = 5

    def tiled_pairing(inputs: torch.Tensor) -> torch.Tensor:
        reps = len(inputs) // len(refs)
        return (encoder(inputs) * refs.repeat(reps, 1)).sum(1)

    from captum.attr import GradientShap

    wrong = GradientShap(tiled_pairing).attribute(
        x, baselines=torch.zeros(2, 1, 8, 8), n_samples=n_samples
    )
    assert _relative(wrong, looped) > 0.1


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("integrated_gradients", {"internal_batch_size": 20}),
        ("integrated_gradients", {"noise_tunnel": "smoothgrad", "nt_stdevs": 0.0, "nt_samples": 3}),
        ("deeplift", {}),
        ("deeplift_shap", {"baseline": torch.rand(3, 1, 8, 8)}),
        ("occlusion", {"method_kwargs": {"perturbations_per_eval": 4, "strides": (1, 2, 2)}}),
        (
            "feature_ablation",
            {
                "method_kwargs": {
                    "perturbations_per_eval": 8,
                    "feature_mask": torch.arange(64).reshape(1, 1, 8, 8) // 4,
                }
            },
        ),
        ("layer_integrated_gradients", {"layer": "conv", "method_kwargs": {"n_steps": 8}}),
    ],
)
def test_deterministic_methods_match_a_per_example_loop_on_tuple_latents(method, kwargs) -> None:
    encoder = TupleEncoder().eval()
    attributor = Attributor(encoder, method, label_free=True, completeness_threshold=None, **kwargs)
    x = torch.rand(5, 1, 8, 8)
    batched = attributor.attribute(x).attributions
    assert _relative(batched, _per_example(attributor, x)) < 1e-4


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_surrogate_methods_pair_per_example(method: str) -> None:
    encoder = TupleEncoder().eval()
    attributor = Attributor(encoder, method, label_free=True, method_kwargs={"n_samples": 12})
    x = torch.rand(3, 1, 8, 8)
    torch.manual_seed(3)
    batched = attributor.attribute(x).attributions
    torch.manual_seed(3)
    assert _relative(batched, _per_example(attributor, x)) < 1e-4


def test_label_free_integrated_gradients_are_complete() -> None:
    encoder = TupleEncoder().eval()
    result = Attributor(encoder, "integrated_gradients", label_free=True).attribute(
        torch.rand(4, 1, 8, 8)
    )
    assert result.targets is None
    assert result.relative_completeness_gap < 0.01
    # g(x) - g(0) with g(x) = <f(x), f(x)>: the reference is the example itself
    g = LabelFreeOutput(encoder)
    refs = g.references(result.inputs)
    expected = g(result.inputs, *refs) - g(torch.zeros_like(result.inputs), *refs)
    torch.testing.assert_close(result.output_delta, expected)


def test_output_delta_pairs_every_baseline_with_each_example() -> None:
    encoder = TupleEncoder().eval()
    baselines = torch.rand(3, 1, 8, 8)
    x = torch.rand(4, 1, 8, 8)
    result = Attributor(encoder, "gradient_shap", label_free=True, baseline=baselines).attribute(x)
    g = LabelFreeOutput(encoder)
    refs = g.references(x)
    expected = torch.stack(
        [
            g(x[i : i + 1], *(r[i : i + 1] for r in refs))[0]
            - torch.stack([g(b[None], *(r[i : i + 1] for r in refs))[0] for b in baselines]).mean()
            for i in range(len(x))
        ]
    )
    torch.testing.assert_close(result.output_delta, expected)


def test_reference_is_detached_and_matches_the_captum_example() -> None:
    encoder = TupleEncoder()
    g = LabelFreeOutput(encoder)
    x = torch.rand(3, 1, 8, 8)
    refs = g.references(x)
    assert all(not r.requires_grad for r in refs)
    ours = Attributor(encoder, "integrated_gradients", label_free=True).attribute(x)
    direct = IntegratedGradients(g).attribute(x, additional_forward_args=refs)
    torch.testing.assert_close(ours.attributions, direct.detach())


def test_bound_method_encoder_with_root() -> None:
    class AE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = TupleEncoder()

        def encode(self, x):
            return self.encoder(x)[0]

    ae = AE()
    x = torch.rand(2, 1, 8, 8)
    result = Attributor(
        ae, "layer_grad_cam", layer="encoder.conv", label_free=True, forward_fn=ae.encode
    )
    assert result.attribute(x).attributions.shape == (2, 1, 8, 8)
    with pytest.raises(TypeError, match="root="):
        LabelFreeOutput(ae.encode)


def test_label_free_rejects_targets() -> None:
    with pytest.raises(ValueError, match="label_free=True"):
        Attributor(TupleEncoder(), "saliency", label_free=True, target="label")


def test_mismatched_references_are_explained() -> None:
    g = LabelFreeOutput(TupleEncoder())
    x = torch.rand(4, 1, 8, 8)
    refs = g.references(x)
    with pytest.raises(ValueError, match="additional_forward_args"):
        g(torch.cat([x, x]), *refs)
    with pytest.raises(ValueError, match="0 reference tensors for a representation with 2"):
        g(x)


def test_latent_leaves_accepts_nested_structures() -> None:
    z = {"a": torch.zeros(2, 1), "b": [torch.zeros(2, 2), (torch.zeros(2, 3),)]}
    assert [t.shape[1] for t in latent_leaves(z)] == [1, 2, 3]
    with pytest.raises(TypeError, match="tensor"):
        latent_leaves(3)
