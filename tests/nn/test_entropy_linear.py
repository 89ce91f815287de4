"""EntropyLinear: the formula, numerical stability, and finding layers anywhere in a model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_xai.nn import EntropyLinear, entropy_layers, entropy_loss


def _manual_forward(layer: EntropyLinear, x: torch.Tensor) -> torch.Tensor:
    """Per class: relevance from L1 norms, softmax, max-normalised scaling, then the linear map."""
    outs = []
    for k in range(layer.n_classes):
        gamma = layer.weight[k].abs().sum(dim=0)
        alpha = torch.softmax(gamma / layer.temperature, dim=0)
        scaled = x * (alpha / alpha.max())
        outs.append(scaled @ layer.weight[k].T + layer.bias[k])
    return torch.stack(outs, dim=1)


def test_forward_matches_the_formula() -> None:
    layer = EntropyLinear(6, 4, n_classes=3, temperature=0.3)
    x = torch.randn(5, 6)
    torch.testing.assert_close(layer(x), _manual_forward(layer, x))


def test_relevance_is_a_distribution_and_normalised_relevance_peaks_at_one() -> None:
    layer = EntropyLinear(7, 3, n_classes=2)
    alpha = layer.relevance()
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(layer.normalized_relevance(), alpha / alpha.amax(1, keepdim=True))
    assert torch.equal(layer.concept_mask(0.5), layer.normalized_relevance() > 0.5)


def test_entropy_matches_definition() -> None:
    layer = EntropyLinear(5, 2, n_classes=3)
    alpha = layer.relevance()
    expected = -(alpha * alpha.log()).sum()
    torch.testing.assert_close(layer.entropy(), expected)


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e30])
def test_huge_weights_give_no_nan(scale: float) -> None:
    layer = EntropyLinear(4, 3, n_classes=2, temperature=0.1)
    with torch.no_grad():
        layer.weight.mul_(scale)
    gamma = layer.weight.abs().sum(dim=1) / layer.temperature
    naive = torch.exp(gamma) / torch.exp(gamma).sum(dim=1, keepdim=True)
    assert torch.isnan(naive).any()  # the unshifted softmax overflows: the bug we avoid
    x = torch.rand(8, 4)
    out = layer(x)
    loss = out.sum() + entropy_loss(layer)
    loss.backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(layer.entropy())
    assert torch.isfinite(layer.weight.grad).all()
    assert torch.isfinite(layer.relevance()).all()


def test_entropy_training_concentrates_relevance() -> None:
    layer = EntropyLinear(10, 4, n_classes=1, temperature=0.6)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    start = float(layer.entropy().detach())
    for _ in range(50):
        optimizer.zero_grad()
        entropy_loss(layer).backward()
        optimizer.step()
    assert float(layer.entropy().detach()) < 0.5 * start


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.ModuleDict({"concepts": EntropyLinear(3, 2, n_classes=2)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner["concepts"](x)


def test_nested_layers_are_found() -> None:
    model = nn.Sequential(nn.Sequential(_Block(), nn.ReLU()), nn.ModuleList([_Block()]))
    layers = entropy_layers(model)
    assert len(layers) == 2
    assert layers[0] is model[0][0].inner["concepts"]
    expected = layers[0].entropy() + layers[1].entropy()
    torch.testing.assert_close(entropy_loss(model), expected)
    # the penalty reaches the nested layers' weights
    entropy_loss(model).backward()
    assert all(layer.weight.grad is not None for layer in layers)


def test_model_without_entropy_layer_is_an_error() -> None:
    with pytest.raises(ValueError, match="no EntropyLinear"):
        entropy_loss(nn.Sequential(nn.Linear(3, 2)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"n_classes": 0}, "n_classes"),
        ({"in_features": 2.5}, "in_features"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    args = {"in_features": 3, "out_features": 2, "n_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        EntropyLinear(**args)


def test_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        EntropyLinear(3, 2, n_classes=1)(torch.zeros(2, 4))


def test_without_bias() -> None:
    layer = EntropyLinear(3, 2, n_classes=2, bias=False)
    assert layer.bias is None
    assert torch.equal(layer(torch.zeros(1, 3)), torch.zeros(1, 2, 2))
