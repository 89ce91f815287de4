"""CUDA equals CPU for the data-attribution pipeline (run with ``make gpu-check``).

The sketch's hashes are drawn on the CPU from the seed and moved to the device, so the same
seed gives the same projection on either; only float summation order differs.
"""

from __future__ import annotations

import pytest
import torch

from lightning_xai.data.digits import load_digits_tensors
from lightning_xai.influence import TRAK, CheckpointStore, GradientSketch, TracIn
from tests.helpers import TinyCNN
from tests.influence.test_tracin import ce, train_checkpoints

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple:
    x, y = load_digits_tensors()
    x, y, xt, yt = x[:96], y[:96], x[300:308], y[300:308]
    torch.manual_seed(0)
    net = TinyCNN()
    store = CheckpointStore(tmp_path_factory.mktemp("ckpt"))
    train_checkpoints(net, x, y, store)
    return net, store, x, y, xt, yt


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.cpu().double() - b.cpu().double()).abs().max() / b.abs().max())


def test_sketch_on_cuda_equals_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    a, d = torch.randn(5, 33, generator=g), torch.randn(5, 17, generator=g)
    dense = torch.randn(5, 17 * 9, generator=g)
    cpu, gpu = GradientSketch(128, seed=3), GradientSketch(128, seed=3, device="cuda")
    assert _rel(gpu.outer("w", a.cuda(), d.cuda()), cpu.outer("w", a, d)) < 1e-5
    assert _rel(gpu.dense("c", dense.cuda(), (17, 9)), cpu.dense("c", dense, (17, 9))) < 1e-5


def test_sketched_tracin_features_on_cuda_equal_cpu(setup) -> None:
    net, store, x, y, xt, yt = setup
    on_cpu = TracIn(net, store, ce, projection_dim=256, show_progress=False, device="cpu")
    on_gpu = TracIn(net.cuda(), store, ce, projection_dim=256, show_progress=False, device="cuda")
    try:
        want = on_cpu.features((x, y))
        got = on_gpu.features((x.cuda(), y.cuda()))
        for f_gpu, f_cpu in zip(got.features, want.features, strict=True):
            assert f_gpu.shape == f_cpu.shape
            assert _rel(f_gpu, f_cpu) < 1e-4
        scores_gpu = on_gpu.influence((xt.cuda(), yt.cuda()), (x.cuda(), y.cuda())).scores
        scores_cpu = on_cpu.influence((xt, yt), (x, y)).scores
        assert _rel(scores_gpu, scores_cpu) < 1e-4
    finally:
        net.cpu()


@pytest.mark.parametrize("projection_dim", [None, 64])
def test_trak_on_cuda_equals_cpu(setup, projection_dim) -> None:
    net, store, x, y, xt, yt = setup
    kw = dict(projection_dim=projection_dim, show_progress=False)
    cpu = TRAK(net, store, ce, device="cpu", **kw)
    want = cpu.influence((xt, yt), (x, y)).scores
    want_self = cpu.self_influence((x, y)).scores
    gpu = TRAK(net.cuda(), store, ce, device="cuda", **kw)
    try:
        got = gpu.influence((xt.cuda(), yt.cuda()), (x.cuda(), y.cuda())).scores
        got_self = gpu.self_influence((x.cuda(), y.cuda())).scores
    finally:
        net.cpu()
    assert gpu.damping_ == pytest.approx(cpu.damping_, rel=1e-4)
    assert _rel(got, want) < 1e-3
    assert _rel(got_self, want_self) < 1e-3
