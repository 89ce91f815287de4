from __future__ import annotations

import pytest
import torch

from lightning_xai.data.digits import load_digits_tensors
from lightning_xai.influence import (
    CheckpointError,
    CheckpointStore,
    GradientFeatures,
    GradientSketch,
    TracIn,
)
from lightning_xai.nn import MLP
from tests.helpers import TinyCNN
from tests.influence.test_tracin import ce, train_checkpoints


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    x, y = load_digits_tensors()
    return x[:64], y[:64], x[200:210], y[200:210]


def test_sketch_is_unbiased_and_factored_equals_dense() -> None:
    g = torch.Generator().manual_seed(0)
    a, d = torch.randn(6, 7, generator=g), torch.randn(6, 5, generator=g)
    outer = (d[:, :, None] * a[:, None, :]).reshape(6, -1)
    estimates = []
    for seed in range(200):
        sketch = GradientSketch(64, seed=seed)
        f = sketch.outer("w", a, d)
        torch.testing.assert_close(f, sketch.dense("w", outer, (5, 7)), atol=1e-4, rtol=1e-4)
        estimates.append(f @ f.T)
    mean = torch.stack(estimates).mean(0)
    exact = outer @ outer.T
    assert float((mean - exact).abs().max() / exact.abs().max()) < 0.1


def test_sketched_tracin_matches_exact_and_equals_across_paths(tmp_path, digits) -> None:
    x, y, xt, yt = digits
    net = TinyCNN()
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    exact = TracIn(net, store, ce, show_progress=False).influence((xt, yt), (x, y)).scores
    fast = TracIn(net, store, ce, projection_dim=4096, show_progress=False)
    slow = TracIn(net, store, ce, projection_dim=4096, method="vmap", show_progress=False)
    a = fast.influence((xt, yt), (x, y)).scores
    torch.testing.assert_close(a, slow.influence((xt, yt), (x, y)).scores, rtol=1e-3, atol=1e-3)
    corr = torch.corrcoef(torch.stack([a.flatten(), exact.flatten()]))[0, 1]
    assert corr > 0.95


def test_stored_features_give_the_same_scores_and_are_reused(tmp_path, digits) -> None:
    x, y, xt, yt = digits
    net = MLP(64, (16,), 10)
    store = CheckpointStore(tmp_path / "ckpt")
    train_checkpoints(net, x, y, store)
    tracin = TracIn(net, store, ce, projection_dim=32, show_progress=False)
    direct = tracin.influence((xt, yt), (x, y)).scores
    feats = tracin.features((x, y), store=tmp_path / "feats")
    assert len(feats) == 64 and feats.dim == 32 and len(feats.features) == 2
    torch.testing.assert_close(tracin.influence((xt, yt), feats).scores, direct)
    torch.testing.assert_close(
        tracin.self_influence(feats).scores, tracin.self_influence((x, y)).scores
    )
    top = tracin.top_k((xt, yt), feats, k=3)
    assert torch.equal(top.indices, direct.topk(3, dim=1).indices)
    # a second object reads them back memory-mapped instead of recomputing
    files = sorted(p.name for p in (tmp_path / "feats").iterdir())
    again = TracIn(net, store, ce, projection_dim=32, show_progress=False).features(
        (x, y), store=tmp_path / "feats"
    )
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == files
    assert torch.equal(again.features[1], feats.features[1])
    # other data, projection or checkpoints: not reused / refused
    other = tracin.features((x[:32], y[:32]), store=tmp_path / "feats")
    assert len(other) == 32
    with pytest.raises(ValueError, match="features computed with"):
        TracIn(net, store, ce, projection_dim=16, show_progress=False).influence((xt, yt), feats)
    train_checkpoints(net, x, y, CheckpointStore(tmp_path / "other"), epochs=1)
    changed = TracIn(net, CheckpointStore(tmp_path / "other"), ce, projection_dim=32)
    with pytest.raises(CheckpointError, match="other checkpoints"):
        changed.influence((xt, yt), feats)


def test_corrupt_feature_files_name_the_fix(tmp_path) -> None:
    f = GradientFeatures([torch.ones(4, 3)], [1.0], ["a" * 64], {"x": 1})
    path = f.save(tmp_path)
    next(tmp_path.glob("features-*-features-0.npy")).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="delete"):
        GradientFeatures.load(path)


def test_gradient_sketch_rejects_bad_dim() -> None:
    with pytest.raises(ValueError, match="`dim`"):
        GradientSketch(0)
