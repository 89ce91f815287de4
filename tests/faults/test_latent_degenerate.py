"""Label-free explainers never rank a NaN row, and never explain a NaN test example."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_xai.influence import LatentNearestNeighbours, SimplEx


@pytest.mark.parametrize("explainer", [SimplEx, LatentNearestNeighbours])
@pytest.mark.parametrize("where", ["test", "train"])
def test_nan_rows_are_refused_naming_the_row(explainer: type, where: str) -> None:
    torch.manual_seed(0)
    encoder = nn.Linear(4, 3)
    train, test = torch.randn(20, 4), torch.randn(5, 4)
    bad = test if where == "test" else train
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=rf"{where}\w* representations.*first at row 2"):
        explainer(encoder).attribute(test, train)
    with pytest.raises(ValueError, match="row 2"):
        explainer(encoder).top_k(test, train, k=3)


def test_finite_inputs_still_explain() -> None:
    torch.manual_seed(0)
    encoder = nn.Linear(4, 3)
    weights = SimplEx(encoder).attribute(torch.randn(5, 4), torch.randn(20, 4))
    assert torch.isfinite(weights).all() and torch.allclose(weights.sum(1), torch.ones(5))
