"""Consistency metrics: brute-force references, class vs functional twin, DDP sums, digits targets."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_xai.metrics import ExampleConsistency, FeatureConsistency
from lightning_xai.metrics.functional import example_consistency, feature_consistency


def _linear_encoder(x: torch.Tensor) -> torch.Tensor:
    """Only the first two features matter, with weights 3 and 2."""
    flat = x.flatten(1)
    return torch.stack([3 * flat[:, 0], 2 * flat[:, 1]], dim=1)


def _reference_agreement(scores, test_labels, train_labels, k) -> float:
    shares = []
    for row, label in zip(scores.tolist(), test_labels.tolist()):
        best = sorted(range(len(row)), key=lambda j: -row[j])[:k]
        shares.append(sum(int(train_labels[j]) == label for j in best) / k)
    return sum(shares) / len(shares)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_example_consistency_matches_a_brute_force_reference(k) -> None:
    g = torch.Generator().manual_seed(k)
    scores = torch.randn(13, 20, generator=g)
    test_labels, train_labels = (
        torch.randint(0, 3, (13,), generator=g),
        torch.randint(0, 3, (20,), generator=g),
    )
    expected = _reference_agreement(scores, test_labels, train_labels, k)
    assert float(example_consistency(scores, test_labels, train_labels, k=k)) == pytest.approx(
        expected
    )
    ranked = scores.argsort(dim=1, descending=True)
    assert float(example_consistency(ranked, test_labels, train_labels, k=k)) == pytest.approx(
        expected
    )
    metric = ExampleConsistency(k=k)
    for rows in (slice(0, 5), slice(5, 13)):
        metric.update(scores[rows], test_labels[rows], train_labels)
    assert float(metric.compute()) == pytest.approx(expected)


def test_feature_consistency_on_an_encoder_with_known_features() -> None:
    x = torch.rand(32, 1, 2, 4) + 0.5
    right = torch.zeros_like(x)
    right[..., 0, 0], right[..., 0, 1] = 3.0, 2.0  # the features the encoder reads
    out = feature_consistency(_linear_encoder, x, right, k=2, n_random=4)
    top = (torch.stack([3 * x[:, 0, 0, 0], 2 * x[:, 0, 0, 1]], 1)).norm(dim=1).mean()  # masked to 0
    assert torch.allclose(out["top_shift"], top, rtol=1e-5)
    assert float(out["ratio"]) > 2 and float(out["random_shift"]) < float(out["top_shift"])
    wrong = feature_consistency(_linear_encoder, x, -right.flip(-1), k=2)
    assert float(wrong["top_shift"]) == 0.0 and float(wrong["ratio"]) == 0.0


def test_feature_consistency_metric_matches_the_functional_twin_and_baselines() -> None:
    x, attributions = torch.rand(10, 1, 2, 4), torch.rand(10, 1, 2, 4)
    functional = feature_consistency(_linear_encoder, x, attributions, k=3, n_random=2, seed=5)
    metric = FeatureConsistency(_linear_encoder, k=3, n_random=2, seed=5)
    metric.update(x, attributions)
    for key, value in metric.compute().items():
        assert torch.allclose(value, functional[key], rtol=1e-5)
    metric.reset()
    metric.update(x[:4], attributions[:4])
    metric.update(x[4:], attributions[4:])  # new random draws, same top-k masks
    assert torch.allclose(metric.compute()["top_shift"], functional["top_shift"], rtol=1e-5)
    assert list(metric.state_dict()) == [] and not list(
        metric.children()
    )  # the encoder is not state
    baseline = torch.full((1, 2, 4), 0.5)
    shifted = feature_consistency(_linear_encoder, x, attributions, k=8, baseline=baseline)
    assert torch.allclose(
        shifted["top_shift"], _linear_encoder(x - 0.5).norm(dim=1).mean(), rtol=1e-5
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: example_consistency(torch.rand(3, 4), torch.zeros(3), torch.zeros(5)), "columns"),
        (
            lambda: example_consistency(torch.rand(3, 4), torch.zeros(2), torch.zeros(4)),
            "test_labels",
        ),
        (
            lambda: example_consistency(torch.rand(3, 4), torch.zeros(3), torch.zeros(4), k=5),
            "exceeds",
        ),
        (
            lambda: example_consistency(
                torch.zeros(3, 2, dtype=torch.long), torch.zeros(3), torch.zeros(4), k=3
            ),
            "exceeds",
        ),
        (lambda: ExampleConsistency(k=0), "k"),
        (lambda: feature_consistency(_linear_encoder, torch.rand(2, 4), torch.rand(2, 5)), "shape"),
        (
            lambda: feature_consistency(_linear_encoder, torch.rand(2, 4), torch.rand(2, 4), k=5),
            "exceeds",
        ),
        (lambda: FeatureConsistency(_linear_encoder, n_random=0), "n_random"),
        (lambda: FeatureConsistency("encoder"), "callable"),
    ],
)
def test_bad_arguments_raise(call, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(
    rank: int, port: int, scores, test_labels, train_labels, x, attributions, out
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        rows = slice(0, 5) if rank == 0 else slice(5, None)
        example = ExampleConsistency(k=3)
        example.update(scores[rows], test_labels[rows], train_labels)
        feature = FeatureConsistency(_linear_encoder, k=2, n_random=1, seed=rank)
        feature.update(x[rows], attributions[rows])
        result = {"example": example.compute(), **feature.compute()}
        if rank == 0:
            out.put({k: float(v) for k, v in result.items()})
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_states_are_summed_across_two_processes() -> None:
    g = torch.Generator().manual_seed(0)
    scores, x = torch.randn(12, 9, generator=g), torch.rand(12, 8, generator=g)
    test_labels, train_labels = (
        torch.randint(0, 2, (12,), generator=g),
        torch.randint(0, 2, (9,), generator=g),
    )
    attributions = torch.zeros(12, 8)
    attributions[:, :2] = 1.0
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(
        _ddp_worker,
        args=(_free_port(), scores, test_labels, train_labels, x, attributions, queue),
        nprocs=2,
    )
    result = queue.get()
    assert result["example"] == pytest.approx(
        _reference_agreement(scores, test_labels, train_labels, 3)
    )
    assert result["top_shift"] == pytest.approx(
        float(_linear_encoder(x).norm(dim=1).mean()), rel=1e-5
    )


def test_digits_feature_consistency_top4_of_64_pixels_beats_random_twice(tmp_path) -> None:
    # imported here so that the spawned DDP workers, which import this module, stay light
    import pytorch_lightning as pl

    from lightning_xai.attribution import Attributor
    from lightning_xai.data import DigitsDataModule
    from lightning_xai.modules import AutoEncoder
    from tests.helpers import make_trainer

    pl.seed_everything(0)
    model, dm = AutoEncoder(latent_dim=16, lr=3e-3), DigitsDataModule(batch_size=64)
    trainer = make_trainer(
        tmp_path, max_epochs=6, limit_train_batches=None, limit_val_batches=0, logger=False
    )
    trainer.fit(model, dm)
    model.eval()
    x = dm.test_dataset.x[:64]
    attributions = (
        Attributor(model, "saliency", label_free=True, forward_fn=model.encode)
        .attribute(x)
        .attributions
    )
    metric = FeatureConsistency(model.encode, k=4, n_random=3)
    metric.update(x, attributions)
    assert float(metric.compute()["ratio"]) >= 2.0
