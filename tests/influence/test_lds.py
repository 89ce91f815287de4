from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import TensorDataset

from lightning_xai.influence import (
    correct_class_margins,
    linear_datamodeling_score,
    random_subsets,
)
from lightning_xai.modules import train_subset_models


def test_lds_equals_scipy_spearman_per_target() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 40, generator=g)
    subsets = random_subsets(40, 12, seed=3)
    margins = torch.randn(12, 5, generator=g)
    result = linear_datamodeling_score(scores, subsets, margins)
    predicted = (subsets.double() @ scores.double().T).numpy()
    want = [spearmanr(predicted[:, i], margins[:, i].numpy()).statistic for i in range(5)]
    torch.testing.assert_close(result.per_target, torch.tensor(want, dtype=torch.float32))
    assert result.score == pytest.approx(sum(want) / 5, abs=1e-6)
    # integer index lists give the same as masks
    index = torch.stack([torch.nonzero(m).flatten() for m in subsets])
    assert linear_datamodeling_score(scores, index, margins).score == pytest.approx(result.score)
    # a perfect attribution: margins linear in the subset sums
    exact = linear_datamodeling_score(scores, subsets, torch.tensor(predicted).float())
    assert exact.score == pytest.approx(1.0)


def test_lds_refuses_bad_inputs() -> None:
    s = random_subsets(10, 4)
    with pytest.raises(ValueError, match="`margins` must be"):
        linear_datamodeling_score(torch.zeros(2, 10), s, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="one column per training example"):
        linear_datamodeling_score(torch.zeros(2, 9), s, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        linear_datamodeling_score(torch.full((2, 10), float("nan")), s, torch.zeros(4, 2))
    constant = linear_datamodeling_score(torch.zeros(2, 10), s, torch.randn(4, 2))
    assert torch.isnan(constant.per_target).all()


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_train_subset_models_through_lightning() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = x[:, :3].argmax(1)
    subsets = random_subsets(40, 3, seed=0)
    margins = train_subset_models(Tiny, TensorDataset(x, y), (x[:5], y[:5]), subsets, max_epochs=2)
    assert margins.shape == (3, 5) and torch.isfinite(margins).all()
    # learned something: mean margin above an untrained model's
    pl.seed_everything(0, verbose=False)
    untrained = correct_class_margins(Tiny()(x[:5]).detach(), y[:5])
    assert float(margins.mean()) > float(untrained.mean())
    again = train_subset_models(Tiny, TensorDataset(x, y), (x[:5], y[:5]), subsets, max_epochs=2)
    torch.testing.assert_close(again, margins)
