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


@pytest.mark.parametrize("output", ["loss", "margin"])
def test_exact_kernel_form_equals_features_and_brute_force(setup, output) -> None:
    """Training data goes through the N x N kernel form (factored gradients); stored exact
    features through the Woodbury solve on the features; both equal the estimator by hand."""
    net, store, x, y, xt, yt = setup
    kw = dict(projection_dim=None, output=output, show_progress=False)
    kernel = TRAK(net, store, ce, **kw)
    got = kernel.influence((xt, yt), (x, y)).scores
    assert kernel._kernel_state and not kernel._fit_state
    lam = kernel.damping_[0]
    want = brute_force(net, store, x, y, xt, yt, lam, output == "margin")
    assert kernel.damping_[1] != lam  # chosen per checkpoint
    per_ckpt = TRAK(net, store, ce, damping=lam, **kw).influence((xt, yt), (x, y)).scores
    assert float((per_ckpt - want).abs().max() / want.abs().max()) < 1e-4
    featured = TRAK(net, store, ce, **kw)
    feats = featured.features((x, y))
    assert feats.dim == sum(p.numel() for p in net.parameters())
    from_features = featured.influence((xt, yt), feats).scores
    assert featured._fit_state and not featured._kernel_state
    assert featured.damping_ == pytest.approx(kernel.damping_, rel=1e-6)
    assert float((from_features - got).abs().max() / got.abs().max()) < 1e-4
    lev_kernel = kernel.self_influence((x, y)).scores
    lev_features = featured.self_influence(feats).scores
    torch.testing.assert_close(lev_kernel, lev_features, rtol=1e-4, atol=1e-6)


def test_default_damping_is_the_mean_squared_norm_whatever_the_projection(setup) -> None:
    net, store, x, y, *_ = setup
    exact = TRAK(net, store, ce, projection_dim=None, output="loss", show_progress=False)
    exact.fit((x, y))
    for ckpt, lam in zip(store, exact.damping_, strict=True):
        g = per_sample_grads(net, (x, y), ce, values={**ckpt.params, **ckpt.buffers})
        assert lam == pytest.approx(float(g.double().square().sum(1).mean()), rel=1e-5)
    # a sketch preserves norms on average: the damping barely moves with the dimension
    sketched = TRAK(net, store, ce, projection_dim=256, output="loss", show_progress=False)
    sketched.fit((x, y))
    assert sketched.damping_ == pytest.approx(exact.damping_, rel=0.3)


def test_undamped_exact_kernel_never_collapses(setup) -> None:
    """More parameters than examples and damping=0: the Gram side stays solvable."""
    net, store, x, y, xt, yt = setup
    trak = TRAK(net, store, ce, projection_dim=None, damping=0.0, show_progress=False)
    scores = trak.influence((xt, yt), (x, y)).scores
    assert torch.isfinite(scores).all() and scores.abs().max() > 0
    leverage = trak.self_influence((x, y)).scores
    assert torch.isfinite(leverage).all()


def test_auto_projection_is_exact_when_small_and_sketched_when_large(setup) -> None:
    net, store, x, y, xt, yt = setup
    small = TRAK(net, store, ce, show_progress=False)
    small.influence((xt, yt), (x, y))
    assert small.projection_dim is None
    g = torch.Generator().manual_seed(0)
    many = torch.rand(4097, 64, generator=g), torch.randint(0, 10, (4097,), generator=g)
    large = TRAK(net, store, ce, batch_size=1024, show_progress=False)
    feats = large.features(many)
    assert large.projection_dim == 2048 and feats.dim == 2048
    assert torch.isfinite(large.influence((xt, yt), feats).scores).all()
    with pytest.raises(ValueError, match="`projection_dim`"):
        TRAK(net, store, ce, projection_dim="big")  # type: ignore[arg-type]
