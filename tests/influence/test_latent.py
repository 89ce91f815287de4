"""SimplEx, latent nearest neighbours and label-free TracIn: exact answers, every row filled,
brute-force references and the digits consistency targets (cheap versions)."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from scipy.optimize import minimize
from torch import nn

from lightning_xai.data import DigitsDataModule
from lightning_xai.influence import (
    Checkpoint,
    LabelFreeTracIn,
    LatentNearestNeighbours,
    SimplEx,
    TopKResult,
    simplex_weights,
)
from lightning_xai.metrics.functional import example_consistency
from lightning_xai.modules import AutoEncoder, VariationalAutoEncoder
from tests.helpers import make_trainer


def _reference_weights(h: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """SLSQP on the simplex: a slow, independent solver of the same problem."""
    n = len(corpus)
    result = minimize(
        lambda w: float(np.sum((w @ corpus - h) ** 2)),
        np.full(n, 1.0 / n),
        jac=lambda w: 2 * corpus @ (w @ corpus - h),
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(n)}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    return result.x


def _error(w: torch.Tensor, h: torch.Tensor, corpus: torch.Tensor) -> torch.Tensor:
    return (w @ corpus - h).pow(2).sum(-1)


def test_simplex_weights_solve_the_constrained_problem_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    corpus = torch.randn(40, 3, generator=g, dtype=torch.float64)
    h = torch.cat(
        [torch.randn(6, 3, generator=g, dtype=torch.float64) * 3, corpus[:4].mean(0, keepdim=True)]
    )
    w = simplex_weights(h, corpus, tol=1e-12)
    assert bool((w >= 0).all()) and torch.allclose(w.sum(1), torch.ones(7, dtype=torch.float64))
    assert bool(((w > 0).sum(1) <= 3 + 1).all())  # Caratheodory: at most d + 1 non-zeros
    for i in range(len(h)):
        ref = torch.from_numpy(_reference_weights(h[i].numpy(), corpus.numpy()))
        assert float(_error(w[i], h[i], corpus)) <= float(_error(ref, h[i], corpus)) + 1e-9
    assert float(_error(w[-1], h[-1], corpus)) < 1e-12  # inside the hull: rebuilt exactly


def test_simplex_weights_known_answers() -> None:
    corpus = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # a duplicate too
    w = simplex_weights(torch.tensor([[2.0, 2.0], [-1.0, -1.0], [0.2, 0.2]]), corpus)
    assert torch.allclose(w[0, 1], torch.tensor(0.5)) and torch.allclose(
        w[0, 2:].sum(), torch.tensor(0.5)
    )
    assert torch.allclose(w[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(w[2] @ corpus, torch.tensor([0.2, 0.2]), atol=1e-6)


@pytest.mark.parametrize("n", [30, 2100])  # 2100: the shared corpus is screened first
def test_per_row_corpora_match_the_shared_corpus(n) -> None:
    g = torch.Generator().manual_seed(1)
    corpus, h = torch.randn(n, 4, generator=g), 3 * torch.randn(5, 4, generator=g)
    shared = simplex_weights(h, corpus)
    per_row = simplex_weights(h, corpus.expand(5, n, 4))
    assert torch.allclose(_error(shared, h, corpus), _error(per_row, h, corpus), atol=1e-5)


@pytest.mark.parametrize("n_test", [1, 7, 513])
@pytest.mark.parametrize("explainer", ["simplex", "knn"])
def test_every_row_is_filled_for_any_number_of_test_examples(n_test, explainer) -> None:
    encoder = nn.Flatten()
    g = torch.Generator().manual_seed(n_test)
    train, test = torch.rand(60, 1, 2, 3, generator=g), torch.rand(n_test, 1, 2, 3, generator=g)
    make = SimplEx if explainer == "simplex" else LatentNearestNeighbours
    scores = make(encoder, batch_size=100).attribute(test, train)
    assert scores.shape == (n_test, 60) and bool(torch.isfinite(scores).all())
    if explainer == "simplex":
        assert torch.allclose(scores.sum(1), torch.ones(n_test), atol=1e-5)
    else:
        assert bool((scores.max(1).values > scores.min(1).values).all())
    assert torch.allclose(scores, make(encoder, batch_size=1024).attribute(test, train), atol=1e-5)


def test_nearest_neighbours_are_exact_and_never_divide_by_zero() -> None:
    g = torch.Generator().manual_seed(0)
    train = torch.randn(50, 5, generator=g)
    test = torch.cat([train[:3], torch.randn(4, 5, generator=g)])  # exact duplicates included
    knn = LatentNearestNeighbours(nn.Identity())
    top = knn.top_k(test, train, k=6)
    assert isinstance(top, TopKResult) and top.indices.shape == (7, 6)
    brute = torch.tensor([[float(((t - r) ** 2).sum().sqrt()) for r in train] for t in test])
    assert torch.equal(top.indices, brute.argsort(dim=1, stable=True)[:, :6])
    assert torch.equal(top.indices[:3, 0], torch.arange(3)) and bool(
        torch.isfinite(top.scores).all()
    )
    cosine = LatentNearestNeighbours(nn.Identity(), metric="cosine").attribute(
        torch.zeros(1, 5), train
    )
    assert bool(torch.isfinite(cosine).all())


def test_simplex_top_k_breaks_zero_weight_ties_by_distance() -> None:
    corpus = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 1.0], [5.0, 2.0], [9.0, 3.0], [1.0, 2.0]])
    top = SimplEx(nn.Identity()).top_k(torch.tensor([[0.5, -1.0]]), corpus, k=6)
    assert top.indices[0, :2].tolist() == [0, 1]  # the nearest hull point is (0.5, 0)
    assert torch.allclose(top.scores[0, :2], torch.tensor([0.5, 0.5]))
    assert top.indices[0, 2:].tolist() == [5, 2, 3, 4]  # zero weights, nearest first


def test_local_corpus_and_sparsity_options() -> None:
    g = torch.Generator().manual_seed(3)
    train, test = torch.randn(80, 4, generator=g), torch.randn(9, 4, generator=g) * 2
    local = SimplEx(nn.Identity(), corpus_top_k=10).attribute(test, train)
    nearest = torch.cdist(test, train).topk(10, largest=False).indices
    outside = torch.ones_like(local, dtype=torch.bool).scatter_(1, nearest, False)
    assert float(local[outside].abs().max()) == 0.0 and torch.allclose(local.sum(1), torch.ones(9))
    sparse = SimplEx(nn.Identity(), n_keep=2).attribute(test, train)
    assert bool(((sparse > 0).sum(1) <= 2).all()) and torch.allclose(sparse.sum(1), torch.ones(9))
    full = SimplEx(nn.Identity(), corpus_top_k=None)
    assert bool(
        (
            full.residual(test, train)
            <= SimplEx(nn.Identity(), n_keep=2).residual(test, train) + 1e-5
        ).all()
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SimplEx("encode"), "callable"),
        (lambda: SimplEx(nn.Identity(), corpus_top_k=0), "corpus_top_k"),
        (lambda: SimplEx(nn.Identity(), n_keep=1.5), "n_keep"),
        (lambda: SimplEx(nn.Identity(), tol=0.0), "tol"),
        (lambda: LatentNearestNeighbours(nn.Identity(), metric="manhattan"), "metric"),
        (lambda: LatentNearestNeighbours(nn.Identity(), batch_size=0), "batch_size"),
        (lambda: SimplEx(nn.Identity()).top_k(torch.rand(2, 3), torch.rand(4, 3), k=5), "at most"),
        (
            lambda: SimplEx(nn.Identity()).attribute_latent(torch.rand(2, 3), torch.rand(4, 2)),
            "differ",
        ),
        (lambda: LabelFreeTracIn(nn.Linear(2, 2), []), "per_sample_loss"),
    ],
)
def test_bad_arguments_raise(make, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("cls", [AutoEncoder, VariationalAutoEncoder])
def test_label_free_tracin_matches_hand_computed_gradients(cls) -> None:
    model = cls(latent_dim=3)
    x_test, x_train = torch.rand(3, 1, 8, 8), torch.rand(5, 1, 8, 8)
    checkpoints = [Checkpoint.from_module(model, lr=0.5)]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    checkpoints.append(Checkpoint.from_module(model, lr=0.25))
    scores = LabelFreeTracIn(model, checkpoints, show_progress=False).attribute(x_test, x_train)

    expected = torch.zeros(3, 5)
    for ckpt in checkpoints:
        model.load_state_dict({**model.state_dict(), **ckpt.params})

        def grads(x: torch.Tensor) -> torch.Tensor:
            rows = []
            for xi in x:
                loss = model.per_sample_loss(xi[None]).sum()
                rows.append(
                    torch.cat(
                        [
                            g.flatten()
                            for g in torch.autograd.grad(loss, list(model.encoder.parameters()))
                        ]
                    )
                )
            return torch.stack(rows)

        expected += ckpt.lr * grads(x_test) @ grads(x_train).T
    assert torch.allclose(scores, expected, rtol=1e-3, atol=1e-6)


def test_label_free_tracin_refuses_its_own_arguments() -> None:
    with pytest.raises(TypeError, match="targets"):
        LabelFreeTracIn(
            AutoEncoder(), [Checkpoint.from_module(AutoEncoder(), lr=1.0)], targets="labels"
        )


@pytest.fixture(scope="module")
def trained_digits_autoencoder(tmp_path_factory) -> tuple[AutoEncoder, DigitsDataModule]:
    pl.seed_everything(0)
    model, dm = AutoEncoder(latent_dim=16, lr=3e-3), DigitsDataModule(batch_size=64)
    trainer = make_trainer(
        tmp_path_factory.mktemp("ae"),
        max_epochs=8,
        limit_train_batches=None,
        limit_val_batches=0,
        logger=False,
    )
    trainer.fit(model, dm)
    return model.eval(), dm


def test_digits_example_consistency_cheap(trained_digits_autoencoder) -> None:
    model, dm = trained_digits_autoencoder
    train, test = dm.train_dataset, dm.test_dataset
    x_train, y_train, x_test, y_test = train.x[:600], train.y[:600], test.x[:100], test.y[:100]
    knn = LatentNearestNeighbours(model.encode).top_k(x_test, x_train, k=10)
    local = SimplEx(model.encode, corpus_top_k=20).top_k(x_test, x_train, k=10)
    random = torch.rand(100, 600)
    assert float(example_consistency(knn.indices, y_test, y_train, k=10)) >= 0.8
    assert float(example_consistency(local.indices, y_test, y_train, k=10)) >= 0.75
    assert float(example_consistency(random, y_test, y_train, k=10)) < 0.2
