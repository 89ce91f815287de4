from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_xai.attribution import Attributor, gaussian_blur, make_baseline, mean_input
from tests.helpers import TinyCNN


def test_zeros_and_constant() -> None:
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(make_baseline("zeros", x), torch.zeros(1, 1, 8, 8))
    assert torch.equal(make_baseline(0.5, x), torch.full((1, 1, 8, 8), 0.5))


def test_mean_needs_the_training_mean() -> None:
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match=r"fit_baseline\(train_inputs\)"):
        make_baseline("mean", x)
    mean = torch.arange(4.0)
    assert torch.equal(make_baseline("mean", x, mean=mean), mean[None])


def test_mean_input_over_tensor_and_loader_agree() -> None:
    data = torch.randn(50, 2, 3)
    loader = DataLoader(TensorDataset(data, torch.zeros(50)), batch_size=7)
    torch.testing.assert_close(mean_input(loader), data.mean(0))
    torch.testing.assert_close(mean_input(data, max_samples=10), data[:10].mean(0))
    torch.testing.assert_close(mean_input(loader, max_samples=10), data[:10].mean(0))
    with pytest.raises(ValueError, match="empty"):
        mean_input([])


def test_blur_keeps_constant_images_and_smooths_edges() -> None:
    flat = torch.full((2, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.5), flat)
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0
    blurred = gaussian_blur(step, 1.0)
    assert blurred[0, 0, 0, 3] > 0 and blurred[0, 0, 0, 4] < 1
    signal = gaussian_blur(torch.rand(2, 1, 16), 1.0)
    assert signal.shape == (2, 1, 16)
    assert make_baseline("blur", torch.rand(4, 1, 8, 8)).shape == (4, 1, 8, 8)


def test_blur_rejects_tabular_inputs_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"baseline='blur'.*'zeros' or 'mean'"):
        make_baseline("blur", torch.rand(4, 6))


def test_tensor_baselines_broadcast_or_match() -> None:
    x = torch.rand(4, 1, 8, 8)
    assert make_baseline(torch.zeros(1, 8, 8), x).shape == (1, 1, 8, 8)
    assert make_baseline(torch.zeros(4, 1, 8, 8), x).shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match=r"batch size 3 but the inputs have 4"):
        make_baseline(torch.zeros(3, 1, 8, 8), x)
    with pytest.raises(ValueError, match=r"shape \(8, 8\)"):
        make_baseline(torch.zeros(8, 8), x)
    assert make_baseline(torch.zeros(3, 1, 8, 8), x, distribution=True).shape == (3, 1, 8, 8)
    assert make_baseline("zeros", x, distribution=True).shape == (1, 1, 8, 8)


@pytest.mark.parametrize(
    ("value", "error"), [("black", ValueError), ([0.0], TypeError), (float("nan"), ValueError)]
)
def test_bad_baselines_fail_at_init(value, error) -> None:
    with pytest.raises(error, match="baseline"):
        Attributor(TinyCNN(), "integrated_gradients", baseline=value)


def test_bad_tensor_baseline_fails_before_attribution() -> None:
    attributor = Attributor(TinyCNN(), "integrated_gradients", baseline=torch.zeros(5))
    with pytest.raises(ValueError, match="fits neither one input"):
        attributor.attribute(torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize("baseline", ["zeros", "mean", "blur", 0.25])
def test_every_baseline_gives_complete_integrated_gradients(baseline) -> None:
    model = TinyCNN().eval()
    attributor = Attributor(model, "integrated_gradients", baseline=baseline)
    attributor.fit_baseline(torch.rand(20, 1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    result = attributor.attribute(x)
    reference = make_baseline(baseline, x, mean=attributor.mean_baseline)
    expected = model(x).gather(1, result.targets[:, None])[:, 0]
    expected = expected - model(reference.expand_as(x)).gather(1, result.targets[:, None])[:, 0]
    torch.testing.assert_close(result.output_delta, expected.detach())
    assert result.relative_completeness_gap < 0.05
