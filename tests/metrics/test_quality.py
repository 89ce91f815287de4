"""Explanation-quality metrics against hand-computed values, brute-force loops and captum."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from captum.metrics import sensitivity_max
from scipy import stats
from torch import Tensor, nn

from lightning_xai.metrics import (
    Complexity,
    FaithfulnessCorrelation,
    LocalLipschitzEstimate,
    MaxSensitivity,
    ParameterRandomisation,
    PixelFlipping,
    PointingGame,
    RegionPerturbation,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
    Sparseness,
)
from lightning_xai.metrics.functional import (
    complexity,
    faithfulness_correlation,
    local_lipschitz_estimate,
    max_sensitivity,
    parameter_randomisation,
    pixel_flipping,
    pointing_game,
    randomisable_layers,
    region_perturbation,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
    ssim,
)
from lightning_xai.metrics.functional._quality import gaussian_blur
from lightning_xai.metrics.functional.faithfulness import _random_subsets
from lightning_xai.utilities.batches import BatchAdapter
from tests.user_models import TwoInputNet, two_input_data


def small_cnn(channels: int = 1, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(classes),
    )


def built(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    model(torch.zeros(1, *shape))
    return model.eval()


def saliency(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).gather(1, t[:, None]).sum(), x)
    return g


# ----------------------------------------------------------------------------- complexity
def test_sparseness_and_complexity_match_the_formulas() -> None:
    a = torch.randn(5, 2, 3, 3)
    before = a.clone()
    flat = a.abs().flatten(1).double().numpy()
    d = flat.shape[1]
    gini = [
        ((2 * np.arange(1, d + 1) - d - 1) * np.sort(row)).sum() / (d * row.sum()) for row in flat
    ]
    p = flat / flat.sum(1, keepdims=True)
    entropy = -(p * np.log(p)).sum(1)
    torch.testing.assert_close(sparseness(a).double(), torch.tensor(gini), atol=1e-6, rtol=0)
    torch.testing.assert_close(complexity(a).double(), torch.tensor(entropy), atol=1e-6, rtol=0)
    assert torch.equal(a, before)


def test_complexity_degenerate_values_are_documented() -> None:
    zeros = torch.zeros(2, 16)
    one_hot = torch.zeros(2, 16)
    one_hot[:, 3] = -5.0
    assert sparseness(zeros).tolist() == [0.0, 0.0]
    assert complexity(zeros).tolist() == pytest.approx([math.log(16)] * 2)
    assert sparseness(one_hot).tolist() == pytest.approx([15 / 16] * 2)
    assert complexity(one_hot).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="non-finite"):
        sparseness(torch.tensor([[1.0, float("nan")]]))


def test_complexity_metric_classes_accumulate() -> None:
    a, b = torch.rand(3, 10), torch.rand(5, 10)
    for cls, fn in ((Sparseness, sparseness), (Complexity, complexity)):
        metric = cls()
        metric.update(a)
        metric.update(b)
        expected = torch.cat([fn(a), fn(b)]).mean()
        torch.testing.assert_close(metric.compute(), expected)
    assert Sparseness.higher_is_better and not Complexity.higher_is_better


# ----------------------------------------------------------------------------- localisation
def test_localisation_hand_values() -> None:
    a = torch.tensor([[0.1, -0.9, 0.3, 0.2], [0.5, 0.5, 0.0, 0.0]])
    m = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    assert pointing_game(a, m).tolist() == [1.0, 1.0]  # a tie at the max: any hit counts
    assert pointing_game(a, m, absolute=False).tolist() == [1.0, 1.0]
    assert pointing_game(a, torch.tensor([[1, 0, 0, 0], [0, 0, 1, 1]])).tolist() == [0.0, 0.0]
    torch.testing.assert_close(relevance_mass_accuracy(a, m), torch.tensor([1.2 / 1.5, 0.5]))
    # |a| ranks features 1, 2, 3, 0: the K=2 best are both in the mask
    assert relevance_rank_accuracy(a, m).tolist() == [1.0, 0.0]  # stable ties: feature 0 first


def test_localisation_against_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 1, 5, 5, generator=g)
    m = torch.rand(6, 1, 5, 5, generator=g) > 0.6
    before = a.clone()
    for i in range(6):
        r, mi = a[i].abs().flatten(), m[i].flatten()
        assert pointing_game(a[i : i + 1], m[i : i + 1]).item() == float(mi[r.argmax()])
        mass = (r * mi).sum() / r.sum()
        assert relevance_mass_accuracy(a[i : i + 1], m[i : i + 1]).item() == pytest.approx(
            mass.item()
        )
        k = int(mi.sum())
        rank = mi[r.argsort(descending=True)[:k]].float().mean()
        assert relevance_rank_accuracy(a[i : i + 1], m[i : i + 1]).item() == pytest.approx(
            rank.item()
        )
    assert torch.equal(a, before)


def test_empty_mask_is_never_a_hit() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    m = torch.tensor([[0, 0], [0, 1]])
    for fn in (pointing_game, relevance_mass_accuracy, relevance_rank_accuracy):
        with pytest.raises(ValueError, match=r"empty for samples \[0\]"):
            fn(a, m)
        with pytest.warns(UserWarning, match=r"empty for samples \[0\]"):
            values = fn(a, m, empty_mask="zero")
        assert values.tolist() == [0.0, 1.0]
    metric = PointingGame(empty_mask="zero")
    with pytest.warns(UserWarning):
        metric.update(a, m)
    assert metric.compute().item() == 0.5
    zeros = torch.zeros(1, 3)
    assert relevance_mass_accuracy(zeros, torch.tensor([[1, 0, 0]])).tolist() == [0.0]


def test_localisation_classes_and_broadcast_masks() -> None:
    a = torch.rand(4, 3, 6, 6)
    m = torch.rand(4, 1, 6, 6) > 0.5
    for cls, fn in (
        (PointingGame, pointing_game),
        (RelevanceMassAccuracy, relevance_mass_accuracy),
        (RelevanceRankAccuracy, relevance_rank_accuracy),
    ):
        metric = cls()
        metric.update(a[:2], m[:2])
        metric.update(a[2:], m[2:])
        torch.testing.assert_close(metric.compute(), fn(a, m).mean())
    with pytest.raises(ValueError, match="does not broadcast"):
        pointing_game(a, torch.ones(4, 2, 6, 6))


# ----------------------------------------------------------------------------- faithfulness
def brute_curve(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Tensor,
    base: Tensor,
    step: int,
    mode: str,
    order: str,
) -> Tensor:
    """One sample at a time, one step at a time: the definition, written plainly."""
    rows = []
    for i in range(len(x)):
        relevance = attr[i].flatten()
        ranking = sorted(
            range(len(relevance)),
            key=lambda f: (-relevance[f].item() if order == "morf" else relevance[f].item(), f),
        )
        shape = attr[i].shape
        current = x[i].clone() if mode == "deletion" else base[i].clone()
        source = base[i] if mode == "deletion" else x[i]
        values = []
        for k in range(math.ceil(len(relevance) / step) + 1):
            if k:
                for f in ranking[(k - 1) * step : k * step]:
                    index = np.unravel_index(f, shape)
                    sel = tuple(slice(None) if s == 1 else int(j) for s, j in zip(shape, index))
                    current[sel] = source[sel]
            with torch.no_grad():
                values.append(model(current[None]).softmax(1)[0, target[i]].item())
        rows.append(values)
    return torch.tensor(rows)


@pytest.mark.parametrize(
    ("mode", "order", "step", "baseline", "channels", "attr_channels"),
    [
        ("deletion", "morf", 1, 0.0, 1, 1),
        ("deletion", "lerf", 5, "black", 1, 1),
        ("insertion", "morf", 4, "blur", 3, 1),
        ("insertion", "lerf", 7, "mean", 3, 3),
    ],
)
def test_pixel_flipping_matches_a_brute_force_loop(
    mode: str, order: str, step: int, baseline: object, channels: int, attr_channels: int
) -> None:
    model = built(small_cnn(channels), (channels, 5, 5))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, channels, 5, 5, generator=g)
    attr = torch.randn(3, attr_channels, 5, 5, generator=g)
    target = torch.tensor([0, 2, 1])
    before = (x.clone(), attr.clone())
    res = pixel_flipping(
        model,
        x,
        attr,
        target,
        mode=mode,
        order=order,
        baseline=baseline,  # type: ignore[arg-type]
        features_per_step=step,
        chunk_size=7,
    )
    if baseline == "blur":
        base = gaussian_blur(x, 1.0)
    elif baseline == "black":
        base = x.amin((1, 2, 3), keepdim=True).expand_as(x)
    elif baseline == "mean":
        base = x.mean((1, 2, 3), keepdim=True).expand_as(x)
    else:
        base = torch.zeros_like(x)
    expected = brute_curve(model, x, attr, target, base, step, mode, order)
    torch.testing.assert_close(res.curve.double(), expected.double(), atol=1e-6, rtol=0)
    steps = expected.shape[1] - 1
    auc = np.trapezoid(expected.numpy(), dx=1 / steps, axis=1)
    torch.testing.assert_close(res.auc.double(), torch.tensor(auc).double(), atol=1e-6, rtol=0)
    assert res.higher_is_better == ((mode == "insertion") == (order == "morf"))
    assert torch.equal(x, before[0]) and torch.equal(attr, before[1])


def test_pixel_flipping_chunking_and_extras() -> None:
    """Chunk size does not change values; per-sample extras follow their sample."""
    torch.manual_seed(0)
    net = TwoInputNet().eval()
    image, features, y = two_input_data(n=6).tensors
    adapted = BatchAdapter().split((image, features, y), net)
    forward = adapted.forward_func(net)
    attr = torch.randn_like(image)
    target = y.long()
    full = pixel_flipping(
        forward, image, attr, target, features_per_step=16, additional_forward_args=features
    )
    small = pixel_flipping(
        forward,
        image,
        attr,
        target,
        features_per_step=16,
        chunk_size=5,
        additional_forward_args=(features,),
    )
    torch.testing.assert_close(full.curve, small.curve)
    for i in range(len(image)):
        one = pixel_flipping(
            forward,
            image[i : i + 1],
            attr[i : i + 1],
            target[i : i + 1],
            features_per_step=16,
            additional_forward_args=features[i : i + 1],
        )
        torch.testing.assert_close(one.curve[0], full.curve[i])
    assert full.curve[:, 0].tolist() == pytest.approx(
        net(image, features).softmax(1).gather(1, target[:, None]).squeeze(1).tolist(), abs=1e-6
    )


def test_pixel_flipping_hand_values_and_errors() -> None:
    w = torch.tensor([[3.0, 2.0, 1.0, 0.0]])

    def model(x: Tensor) -> Tensor:
        return torch.cat([x @ w.T, -x @ w.T], 1)

    res = pixel_flipping(model, torch.ones(1, 4), w, 0, softmax=False, mode="insertion")
    assert res.curve.tolist() == [[0.0, 3.0, 5.0, 6.0, 6.0]]
    assert res.auc.item() == pytest.approx((0 + 3 + 5 + 6 + 3) / 4)
    with pytest.raises(ValueError, match="`mode`"):
        pixel_flipping(model, torch.ones(1, 4), w, 0, mode="delete")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`attributions` has shape"):
        pixel_flipping(model, torch.ones(1, 4), torch.ones(4), 0)
    with pytest.raises(ValueError, match="forward_func"):
        pixel_flipping(lambda x: x.sum(1), torch.ones(1, 4), w, 0)
    with pytest.raises(ValueError, match="`target`"):
        pixel_flipping(model, torch.ones(2, 4), w.expand(2, 4), torch.tensor([0, 1, 0]))
    zeros = pixel_flipping(model, torch.ones(1, 4), torch.zeros(1, 4), 0, softmax=False)
    assert zeros.curve.tolist() == [[6.0, 3.0, 1.0, 0.0, 0.0]]  # ties: feature order


def brute_regions(
    model: nn.Module, x: Tensor, attr: Tensor, target: Tensor, patch: int, regions: int
) -> Tensor:
    n, c, h, w = x.shape
    ph, pw = (-h) % patch // 2, (-w) % patch // 2
    rows = []
    for i in range(n):
        cells = {}
        for r in range(h):
            for s in range(w):
                cells.setdefault(((r + ph) // patch, (s + pw) // patch), []).append((r, s))
        full = attr[i].expand(c, h, w)
        scored = sorted(
            cells.items(), key=lambda kv: -sum(full[:, r, s].sum().item() for r, s in kv[1])
        )
        current = x[i].clone()
        values = [model(current[None]).softmax(1)[0, target[i]].item()]
        for _, pixels in scored[:regions]:
            for r, s in pixels:
                current[:, r, s] = 0.0
            values.append(model(current[None]).softmax(1)[0, target[i]].item())
        rows.append(values)
    return torch.tensor(rows)


def test_region_perturbation_matches_a_brute_force_loop() -> None:
    model = built(small_cnn(3), (3, 7, 7))
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 7, 7, generator=g)
    attr = torch.randn(2, 1, 7, 7, generator=g)
    target = torch.tensor([1, 0])
    res = region_perturbation(model, x, attr, target, patch_size=3, regions=5, chunk_size=3)
    with torch.no_grad():
        expected = brute_regions(model, x, attr, target, 3, 5)
    torch.testing.assert_close(res.curve.double(), expected.double(), atol=1e-6, rtol=0)
    assert res.curve.shape == (2, 6)
    metric = RegionPerturbation(model, patch_size=3, regions=5)
    metric.update(x, attr, target)
    torch.testing.assert_close(metric.compute(), res.auc.mean())
    assert not metric.higher_is_better
    assert PixelFlipping(model, mode="insertion").higher_is_better


def test_faithfulness_correlation_brute_force_and_seed() -> None:
    model = built(small_cnn(1), (1, 4, 4))
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 4, 4, generator=g)
    attr = torch.randn(3, 1, 4, 4, generator=g)
    target = torch.tensor([0, 1, 2])
    values = faithfulness_correlation(
        model, x, attr, target, n_runs=12, subset_size=5, seed=7, chunk_size=5
    )
    masks = _random_subsets(3, 16, 12, 5, seed=7)
    for i in range(3):
        drops, sums = [], []
        clean = model(x[i : i + 1]).softmax(1)[0, target[i]].item()
        for r in range(12):
            m = masks[i, r].reshape(1, 4, 4)
            pert = torch.where(m, torch.zeros_like(x[i]), x[i])
            drops.append(clean - model(pert[None]).softmax(1)[0, target[i]].item())
            sums.append(attr[i][m].sum().item())
        assert values[i].item() == pytest.approx(stats.pearsonr(sums, drops)[0], abs=1e-5)
    again = faithfulness_correlation(model, x, attr, target, n_runs=12, subset_size=5, seed=7)
    other = faithfulness_correlation(model, x, attr, target, n_runs=12, subset_size=5, seed=8)
    torch.testing.assert_close(values, again)
    assert not torch.allclose(values, other)
    state = torch.random.get_rng_state()
    zeros = faithfulness_correlation(model, x, torch.zeros_like(attr), target, n_runs=4)
    assert torch.equal(state, torch.random.get_rng_state())
    assert zeros.tolist() == [0.0, 0.0, 0.0]
    metric = FaithfulnessCorrelation(model, n_runs=12, subset_size=5, seed=7)
    metric.update(x, attr, target)
    torch.testing.assert_close(metric.compute(), values.mean())


def test_the_random_control_scores_worse() -> None:
    """A linear model: its weights are the faithful attribution; noise is not."""
    torch.manual_seed(0)
    w = torch.randn(2, 16)

    def model(x: Tensor) -> Tensor:
        return x @ w.T

    x = torch.rand(8, 16)
    target = torch.zeros(8, dtype=torch.long)
    good = (w[0] - w[1]) * x
    noise = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    deletion = [pixel_flipping(model, x, a, target).auc.mean() for a in (good, noise)]
    insertion = [
        pixel_flipping(model, x, a, target, mode="insertion").auc.mean() for a in (good, noise)
    ]
    corr = [faithfulness_correlation(model, x, a, target).mean() for a in (good, noise)]
    assert deletion[0] < deletion[1] and insertion[0] > insertion[1] and corr[0] > corr[1]


# ----------------------------------------------------------------------------- robustness
def test_max_sensitivity_matches_captum_with_the_same_noise() -> None:
    model = built(small_cnn(1), (1, 4, 4))
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 1, 4, 4, generator=g)
    target = torch.tensor([0, 1, 2])

    def explain(inputs: Tensor, t: Tensor) -> Tensor:
        return saliency(model, inputs, t)

    ours = max_sensitivity(explain, x, target, radius=0.05, n_samples=4, seed=5, chunk_size=5)
    noise_gen = torch.Generator().manual_seed(5)
    delta = (torch.rand((4, *x.shape), generator=noise_gen, dtype=torch.float64) * 2 - 1) * 0.05
    # captum repeats each sample n_perturb_samples times in a row: sample-major layout
    layout = delta.float().transpose(0, 1).reshape(-1, *x.shape[1:])

    def perturb(inputs: Tensor, perturb_radius: float) -> Tensor:
        return inputs + layout

    def captum_explain(inputs: Tensor | tuple[Tensor, ...], target: Tensor) -> object:
        with torch.enable_grad():  # captum evaluates under no_grad
            if isinstance(inputs, tuple):  # captum passes the clean inputs as a tuple
                return (saliency(model, inputs[0], target),)
            return saliency(model, inputs, target)

    reference = sensitivity_max(
        captum_explain, x, perturb_func=perturb, n_perturb_samples=4, target=target
    )
    torch.testing.assert_close(ours, reference.float(), atol=1e-5, rtol=1e-4)
    assert torch.equal(ours, max_sensitivity(explain, x, target, radius=0.05, n_samples=4, seed=5))


def test_local_lipschitz_and_robustness_classes() -> None:
    def explain(x: Tensor, t: Tensor) -> Tensor:
        return torch.stack([2.0 * x[:, 0], -x[:, 1]], 1)

    x = torch.rand(5, 2)
    values = local_lipschitz_estimate(explain, x, 0, n_samples=50)
    assert ((values <= 2.0 + 1e-6) & (values > 1.5)).all()
    metric = LocalLipschitzEstimate(explain, n_samples=50)
    metric.update(x, 0)
    torch.testing.assert_close(metric.compute(), values.mean())
    ms = MaxSensitivity(explain, radius=0.1)
    ms.update(x, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(ms.compute(), max_sensitivity(explain, x, 0, radius=0.1).mean())
    zero = max_sensitivity(lambda x, t: torch.zeros_like(x), x, 0)
    assert zero.tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="`radius`"):
        MaxSensitivity(explain, radius=0.0)


def test_robustness_under_inference_mode() -> None:
    model = built(small_cnn(1), (1, 4, 4))
    with torch.inference_mode():
        x = torch.rand(2, 1, 4, 4)
        t = torch.tensor([0, 1])
        values = max_sensitivity(lambda a, b: saliency(model, a, b), x, t, n_samples=2)
    assert torch.isfinite(values).all()


# ----------------------------------------------------------------------------- randomisation
def test_parameter_randomisation_cascade_against_a_manual_copy() -> None:
    model = built(small_cnn(1), (1, 6, 6))
    x = torch.rand(4, 1, 6, 6)
    x[:, :, :2] = 0.0  # off the support
    target = torch.tensor([0, 1, 2, 0])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    res = parameter_randomisation(model, x, target, saliency, seed=11)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert res.layers == ["3", "0"] == randomisable_layers(model)[::-1]

    original = saliency(model, x, target).abs()
    twin = built(small_cnn(1), (1, 6, 6))
    twin.load_state_dict(weights)
    for row, name in enumerate(res.layers):
        torch.manual_seed(11)
        twin.get_submodule(name).reset_parameters()
        other = saliency(twin, x, target).abs()
        for i in range(4):
            a, b = original[i].flatten().numpy(), other[i].flatten().numpy()
            assert res.spearman[row, i].item() == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-5)
            keep = x[i].flatten().numpy() != 0
            expected = stats.spearmanr(a[keep], b[keep])[0]
            assert res.spearman_support[row, i].item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="`layers`"):
        parameter_randomisation(model, x, target, saliency, layers=["1"])


def test_parameter_randomisation_independent_and_metric() -> None:
    model = built(small_cnn(1), (1, 6, 6))
    x = torch.rand(4, 1, 6, 6)
    target = torch.tensor([0, 1, 2, 0])
    independent = parameter_randomisation(model, x, target, saliency, layer_order="independent")
    cascade = parameter_randomisation(model, x, target, saliency)
    # the top layer comes first in both; the second entry differs (one random layer vs two)
    torch.testing.assert_close(independent.spearman[0], cascade.spearman[0])
    assert not torch.allclose(independent.spearman[1], cascade.spearman[1])
    metric = ParameterRandomisation(model, saliency)
    metric.update(x[:2], target[:2])
    metric.update(x[2:], target[2:])
    out = metric.compute()
    for name, values in cascade.as_dict().items():
        torch.testing.assert_close(out[name], values.mean(1))
    assert not ParameterRandomisation.higher_is_better


def test_ssim_and_correlation_degenerate_cases() -> None:
    a = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(ssim(a, a), torch.ones(2, dtype=torch.float64))
    assert (ssim(a, 1 - a) < 0.5).all()
    zeros = torch.zeros(3, 1, 6, 6)
    model = built(small_cnn(1), (1, 6, 6))
    res = parameter_randomisation(
        model, torch.rand(3, 1, 6, 6), 0, lambda m, x, t: torch.zeros_like(x)
    )
    assert res.spearman.eq(0).all() and res.spearman_support.eq(0).all()
    assert torch.isfinite(res.ssim).all()
    assert zeros.sum() == 0


def test_no_warnings_on_the_clean_path() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparseness(torch.rand(2, 4))
        pointing_game(torch.rand(2, 4), torch.ones(2, 4))


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_unchanged_steps_reuse_the_previous_score(mode: str) -> None:
    """Zero background under a zero baseline: skipped forward passes, same curve."""
    model = built(small_cnn(1), (1, 5, 5))
    g = torch.Generator().manual_seed(6)
    x = torch.rand(3, 1, 5, 5, generator=g)
    x[x < 0.5] = 0.0
    attr = x * torch.randn(3, 1, 5, 5, generator=g)  # ties at 0 on the background
    target = torch.tensor([2, 0, 1])
    calls: list[int] = []

    def counted(inputs: Tensor) -> Tensor:
        calls.append(len(inputs))
        return model(inputs)

    res = pixel_flipping(counted, x, attr, target, mode=mode, features_per_step=2)  # type: ignore[arg-type]
    with torch.no_grad():
        expected = brute_curve(model, x, attr, target, torch.zeros_like(x), 2, mode, "morf")
    torch.testing.assert_close(res.curve.double(), expected.double(), atol=1e-6, rtol=0)
    assert sum(calls) < 3 * 14  # fewer forward rows than curve points


def test_metric_states_merge_like_a_ddp_sum() -> None:
    """States are sums and counts: merging two processes' states gives the global mean."""
    model = built(small_cnn(1), (1, 4, 4))
    x, attr = torch.rand(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    first, second = PixelFlipping(model), PixelFlipping(model)
    first.update(x[:2], attr[:2], target[:2])
    second.update(x[2:], attr[2:], target[2:])
    first.merge_state(second)
    torch.testing.assert_close(first.compute(), pixel_flipping(model, x, attr, target).auc.mean())
    randomised = [ParameterRandomisation(model, saliency) for _ in range(2)]
    randomised[0].update(x[:4], target[:4])
    randomised[1].update(x[4:], target[4:])
    randomised[0].merge_state(randomised[1])
    whole = parameter_randomisation(model, x, target, saliency)
    torch.testing.assert_close(randomised[0].compute()["spearman"], whole.spearman.mean(1))
