"""The input-gradient penalty against loops over samples, finite differences and hand formulas."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.penalties import (
    check_sample_independence,
    log_prob_input_gradients,
    right_reasons_penalty,
    sample_coupling_modules,
)


def _mlp(dtype: torch.dtype = torch.float32, batch_norm: bool = False) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(12, 8)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.Tanh(), nn.Linear(8, 4)]
    return nn.Sequential(*layers).to(dtype)


def _loop_gradients(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference: one backward per sample of its own summed log-probabilities, batch as given."""
    rows = []
    for n in range(len(x)):
        xx = x.detach().clone().requires_grad_(True)
        log_probs = F.log_softmax(model(xx), dim=-1)
        rows.append(torch.autograd.grad(log_probs[n].sum(), xx)[0][n])
    return torch.stack(rows)


def _mask(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.3


@pytest.mark.parametrize("method", ["batch_sum", "per_sample", "auto"])
def test_gradients_match_a_loop_over_samples(method: str) -> None:
    model, x = _mlp(), torch.randn(6, 3, 2, 2)
    grads, logits = log_prob_input_gradients(model, x, method=method)
    torch.testing.assert_close(grads, _loop_gradients(model, x))
    torch.testing.assert_close(logits, model(x))


def test_penalty_is_the_formula() -> None:
    model, x = _mlp(), torch.randn(5, 1, 3, 4)
    mask = _mask(x.shape)
    g = _loop_gradients(model, x)
    by_hand = ((mask.float() * g) ** 2).sum(dim=(1, 2, 3))
    out_sum = right_reasons_penalty(model, x, mask, reduction="sum")
    out_mean = right_reasons_penalty(model, x, mask.float(), reduction="mean")
    torch.testing.assert_close(out_sum.per_sample, by_hand)
    torch.testing.assert_close(out_sum.penalty, by_hand.sum())
    torch.testing.assert_close(out_mean.penalty, by_hand.mean())
    torch.testing.assert_close(out_sum.log_probs, F.log_softmax(model(x), dim=-1))


def test_penalty_gradient_matches_finite_differences() -> None:
    """create_graph=True makes the penalty a differentiable function of the parameters."""
    model, x = _mlp(torch.float64), torch.randn(4, 12, dtype=torch.float64)
    mask = _mask(x.shape)
    out = right_reasons_penalty(model, x, mask, reduction="sum")
    weight = model[1].weight
    (analytic,) = torch.autograd.grad(out.penalty, weight)
    assert analytic.abs().max() > 0
    eps, numeric = 1e-6, torch.zeros_like(weight)
    with torch.no_grad():
        for i in range(weight.shape[0]):
            for j in range(weight.shape[1]):
                weight[i, j] += eps
                plus = right_reasons_penalty(model, x, mask, reduction="sum", create_graph=False)
                weight[i, j] -= 2 * eps
                minus = right_reasons_penalty(model, x, mask, reduction="sum", create_graph=False)
                weight[i, j] += eps
                numeric[i, j] = (plus.penalty - minus.penalty) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_without_create_graph_the_penalty_is_constant_for_the_optimizer() -> None:
    model, x = _mlp(), torch.randn(4, 12)
    out = right_reasons_penalty(model, x, torch.ones_like(x), create_graph=False)
    assert out.penalty > 0 and not out.penalty.requires_grad


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_works_where_lightning_evaluates(context: str) -> None:
    model = _mlp()
    ctx = torch.no_grad() if context == "no_grad" else torch.inference_mode()
    with ctx:
        x, mask = torch.randn(3, 12), torch.ones(3, 12, dtype=torch.bool)
        out = right_reasons_penalty(model, x, mask, create_graph=False)
    expected = right_reasons_penalty(model, x.clone(), mask.clone(), create_graph=False)
    torch.testing.assert_close(out.penalty, expected.penalty)


def test_batch_norm_in_train_mode_is_detected_and_per_sample_is_exact() -> None:
    model, x = _mlp(batch_norm=True), torch.randn(6, 12)
    assert sample_coupling_modules(model) == ["2"]
    assert not check_sample_independence(model, x)
    reference = _loop_gradients(model, x)
    exact, _ = log_prob_input_gradients(model, x, method="per_sample", chunk_size=4)
    torch.testing.assert_close(exact, reference)
    with pytest.warns(UserWarning, match="method='per_sample'"):
        fast, _ = log_prob_input_gradients(model, x, method="auto")
    assert not torch.allclose(fast, reference)  # cross-sample terms
    with warnings.catch_warnings():  # warned once per model
        warnings.simplefilter("error")
        log_prob_input_gradients(model, x, method="auto")


def test_independent_models_do_not_warn() -> None:
    model, x = _mlp(batch_norm=True).eval(), torch.randn(6, 12)
    assert sample_coupling_modules(model) == []
    assert check_sample_independence(model, x)
    assert check_sample_independence(_mlp(), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_prob_input_gradients(model, x)
        log_prob_input_gradients(_mlp(batch_norm=True), x, method="batch_sum")


def test_check_sample_independence_leaves_running_stats_alone() -> None:
    model = _mlp(batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_sample_independence(model, torch.randn(5, 12) * 3 + 2)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_per_sample_penalty_trains_through_batch_norm() -> None:
    model, x = _mlp(batch_norm=True), torch.randn(6, 12)
    out = right_reasons_penalty(model, x, torch.ones_like(x), method="per_sample")
    out.penalty.backward()
    assert model[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mask": torch.ones(4, 11)}, ValueError, r"`mask` has shape \(4, 11\).*inputs have shape"),
        ({"mask": torch.ones(2, 12)}, ValueError, "`mask` has shape"),
        ({"mask": torch.ones(4, 12, dtype=torch.long)}, TypeError, r"`mask`.*int64.*mask.bool\(\)"),
        ({"mask": [[1.0] * 12] * 4}, TypeError, "`mask` must be a torch.Tensor"),
        (
            {"inputs": torch.ones(4, 12, dtype=torch.long)},
            TypeError,
            r"floating-point.*x.float\(\)",
        ),
        ({"method": "exact"}, ValueError, "`method` must be one of.*'exact'"),
        ({"reduction": "max"}, ValueError, "`reduction` must be one of.*'max'"),
        ({"chunk_size": 0}, ValueError, "`chunk_size`"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, error: type, match: str) -> None:
    args = {"model": _mlp(), "inputs": torch.randn(4, 12), "mask": torch.ones(4, 12)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        right_reasons_penalty(args.pop("model"), args.pop("inputs"), args.pop("mask"), **args)


def test_non_logit_outputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"logits of shape \(N, num_classes\)"):
        right_reasons_penalty(nn.Identity(), torch.randn(2, 3, 4), torch.ones(2, 3, 4))


def test_channel_shared_mask_broadcasts() -> None:
    model, x = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), torch.randn(2, 3, 2, 2)
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[:, :, 0, 0] = True
    out = right_reasons_penalty(model, x, mask, reduction="sum")
    full = right_reasons_penalty(model, x, mask.expand_as(x), reduction="sum")
    torch.testing.assert_close(out.penalty, full.penalty)
