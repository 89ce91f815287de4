"""Annotation-mask helpers and "find another explanation"."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.penalties import (
    box_mask,
    check_mask,
    find_another_explanation,
    largest_gradient_mask,
    right_reasons_penalty,
)


def test_box_mask_matches_slicing() -> None:
    boxes = torch.tensor([[0, 0, 2, 3], [3, 2, 2, 2], [1, 4, 9, 9]])
    mask = box_mask((2, 5, 6), boxes)
    expected = torch.zeros(3, 2, 5, 6, dtype=torch.bool)
    for n, (top, left, h, w) in enumerate(boxes.tolist()):
        expected[n, :, top : top + h, left : left + w] = True
    assert torch.equal(mask, expected)


@pytest.mark.parametrize(
    ("shape", "boxes", "error"),
    [
        ((5,), torch.zeros(1, 4, dtype=torch.long), ValueError),
        ((5, 5), torch.zeros(1, 3), ValueError),
    ],
)
def test_box_mask_errors(shape: tuple, boxes: torch.Tensor, error: type) -> None:
    with pytest.raises(error):
        box_mask(shape, boxes)
    with pytest.raises(TypeError, match="integers"):
        box_mask((5, 5), torch.zeros(1, 4))


def test_check_mask_accepts_broadcastable_and_rejects_the_rest() -> None:
    x = torch.zeros(4, 3, 5, 5)
    assert check_mask(torch.ones(4, 1, 5, 5, dtype=torch.bool), x).dtype == torch.bool
    assert check_mask(torch.ones(4, 1, 5, 5, dtype=torch.float64), x).dtype == torch.float32
    assert check_mask(torch.ones(5, 5), x).shape == (5, 5)
    for shape in [(2, 3, 5, 5), (4, 3, 5, 4), (1, 4, 3, 5, 5)]:
        with pytest.raises(ValueError, match="`mask` has shape"):
            check_mask(torch.ones(shape), x)


def test_largest_gradient_mask_is_relative_to_each_sample() -> None:
    g = torch.tensor([[1.0, -10.0, 7.0], [0.1, 0.2, -0.3], [0.0, 0.0, 0.0]])
    assert largest_gradient_mask(g, cutoff=0.6).tolist() == [
        [False, True, True],
        [False, True, True],
        [False, False, False],
    ]
    with pytest.raises(ValueError, match="`cutoff`"):
        largest_gradient_mask(g, cutoff=0.0)


def _redundant_data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Label = sign of feature 0 = sign of feature 1 (two redundant explanations); 2, 3 noise."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    signal = (2 * y - 1).float() * (0.5 + torch.rand(n, generator=g))
    x = torch.randn(n, 4, generator=g) * 0.1
    x[:, 0] += signal
    x[:, 1] += signal
    return x, y


def _train(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        if mask is None:
            loss = F.cross_entropy(model(x), y)
        else:
            out = right_reasons_penalty(model, x, mask)
            loss = F.nll_loss(out.log_probs, y) + 100.0 * out.penalty
        loss.backward()
        opt.step()
    return model


def test_a_sequence_of_models_relies_on_different_features() -> None:
    x, y = _redundant_data()
    first_model = _train(x, y, None)
    first = find_another_explanation(first_model, x)
    used_first = first.float().mean(0)
    assert used_first[2:].max() < 0.2  # noise features are not the explanation
    assert used_first[:2].max() > 0.5

    second_model = _train(x, y, first)
    second = find_another_explanation(second_model, x, first)
    assert torch.equal(second & first, first)  # a union: nothing forgotten
    assert (second.float().sum() > first.float().sum()).item()  # something new is forbidden
    accuracy = (second_model(x).argmax(-1) == y).float().mean()
    assert accuracy > 0.95  # still right, for another reason


def test_find_another_explanation_restores_training_mode_and_validates() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    x = torch.randn(10, 4)
    find_another_explanation(model, x, batch_size=3)
    assert model.training
    with pytest.raises(ValueError, match="`previous_mask` has shape"):
        find_another_explanation(model, x, torch.zeros(10, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="`batch_size`"):
        find_another_explanation(model, x, batch_size=0)
