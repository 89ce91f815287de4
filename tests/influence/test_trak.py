from __future__ import annotations

import pytest
import torch

from lightning_xai.data.digits import load_digits_tensors
from lightning_xai.influence import TRAK, CheckpointStore, TracIn, gcv_damping, per_sample_grads
from lightning_xai.nn import MLP
from tests.influence.test_tracin import ce, train_checkpoints


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple:
    x, y = load_digits_tensors()
    x, y, xt, yt = x[:60], y[:60], x[300:306], y[300:306]
    net = MLP(64, (8,), 10)
    store = CheckpointStore(tmp_path_factory.mktemp("ckpt"))
    train_checkpoints(net, x, y, store)
    return net, store, x, y, xt, yt


def brute_force(net, store, x, y, xt, yt, damping: float, margin: bool) -> torch.Tensor:
    """The estimator written out with exact gradients: sum_c phi_t (Phi^T Phi + l I)^-1 g_j / C."""
    total = 0
    for ckpt in store:
        values = {**ckpt.params, **ckpt.buffers}
        g = per_sample_grads(net, (x, y), ce, values=values).double()
        t = per_sample_grads(net, (xt, yt), ce, values=values).double()
        if margin:
            with torch.no_grad():
                q = -torch.expm1(-ce(torch.func.functional_call(net, values, (x,)), y)).double()
                qt = -torch.expm1(-ce(torch.func.functional_call(net, values, (xt,)), yt)).double()
            phi, t = g / q[:, None], t / qt[:, None]
        else:
            phi = g
        kernel = phi.T @ phi + damping * torch.eye(g.shape[1], dtype=torch.float64)
        total = total + t @ torch.linalg.solve(kernel, g.T) / len(store)
    return total.float()


@pytest.mark.parametrize("output", ["loss", "margin"])
def test_trak_equals_brute_force_without_projection(setup, output) -> None:
    net, store, x, y, xt, yt = setup
    trak = TRAK(
        net, store, ce, projection_dim=None, damping=0.5, output=output, show_progress=False
    )
    got = trak.influence((xt, yt), (x, y)).scores
    want = brute_force(net, store, x, y, xt, yt, 0.5, output == "margin")
    assert float((got - want).abs().max() / want.abs().max()) < 1e-4
    assert trak.damping_ == [0.5, 0.5]


def test_default_damping_is_automatic_and_never_collapses(setup) -> None:
    net, store, x, y, xt, yt = setup
    for dim in (64, 2048):  # 2048 features for 60 examples: undamped would be singular
        trak = TRAK(net, store, ce, projection_dim=dim, show_progress=False)
        scores = trak.influence((xt, yt), (x, y)).scores
        assert torch.isfinite(scores).all() and scores.abs().max() > 0
        assert all(d > 0 for d in trak.damping_)
        leverage = trak.self_influence((x, y)).scores
        assert torch.isfinite(leverage).all() and (leverage > 0).all() and (leverage < 1).all()
        # rankings agree with the exact (unprojected) estimator at the same damping
        exact = TRAK(
            net, store, ce, projection_dim=None, damping=trak.damping_[0], show_progress=False
        )
        corr = torch.corrcoef(
            torch.stack([scores.flatten(), exact.influence((xt, yt), (x, y)).scores.flatten()])
        )[0, 1]
        assert corr > 0.5
    gcv = TRAK(net, store, ce, projection_dim=64, damping="gcv", show_progress=False)
    assert torch.isfinite(gcv.influence((xt, yt), (x, y)).scores).all()


def test_training_side_is_computed_once_and_features_reusable(setup, tmp_path) -> None:
    net, store, x, y, xt, yt = setup
    trak = TRAK(net, store, ce, projection_dim=32, show_progress=False)
    first = trak.influence((xt, yt), (x, y)).scores
    state = trak._fit_state
    second = trak.influence((xt[:2], yt[:2]), (x, y)).scores
    assert trak._fit_state is state
    torch.testing.assert_close(second, first[:2])
    feats = trak.features((x, y), store=tmp_path)
    torch.testing.assert_close(trak.influence((xt, yt), feats).scores, first)
    top = trak.top_k((xt, yt), feats, k=4)
    assert torch.equal(top.indices, first.topk(4, dim=1).indices)
    with pytest.raises(ValueError, match="lack the per-sample losses|features computed with"):
        trak.influence(
            (xt, yt),
            TracIn(net, store, ce, projection_dim=32, show_progress=False).features((x, y)),
        )


def test_gcv_damping_picks_more_for_noisier_targets() -> None:
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(300, 30, generator=g)
    signal = phi @ torch.randn(30, generator=g)
    quiet = gcv_damping(phi, signal + 0.1 * torch.randn(300, generator=g))
    noisy = gcv_damping(phi, signal + 10 * torch.randn(300, generator=g))
    assert noisy > 10 * quiet


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(damping=-1.0), ValueError, "`damping`"),
        (dict(damping="auto"), TypeError, "`damping`"),
        (dict(output="logits"), ValueError, "`output`"),
        (dict(targets="inputs"), ValueError, "output='loss'"),
        (dict(projection_dim=0), ValueError, "`projection_dim`"),
    ],
)
def test_bad_arguments_name_the_fix(setup, kwargs, error, match) -> None:
    net, store, *_ = setup
    with pytest.raises(error, match=match):
        TRAK(net, store, ce, **kwargs)
