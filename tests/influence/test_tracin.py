from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_xai.data.digits import load_digits_tensors
from lightning_xai.influence import Checkpoint, CheckpointStore, TracIn, per_sample_grads
from lightning_xai.nn import MLP
from tests.helpers import TinyCNN


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def squared(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.squeeze(1) - y) ** 2


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    x, y = load_digits_tensors()
    return x[:48], y[:48], x[100:106], y[100:106]


def train_checkpoints(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, store: CheckpointStore, epochs: int = 2
) -> None:
    """A few SGD epochs, one checkpoint (with its learning rate) per epoch."""
    torch.manual_seed(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for epoch in range(epochs):
        for i in range(0, len(x), 16):
            opt.zero_grad()
            F.cross_entropy(net(x[i : i + 16]), y[i : i + 16]).backward()
            opt.step()
        store.save(Checkpoint.from_module(net, 0.1 * (epoch + 1), epoch=epoch, step=epoch))


def test_tracin_by_hand_on_a_linear_model() -> None:
    # f(x) = w.x, loss (f(x) - y)^2, gradient 2 (w.x - y) x.
    net = nn.Linear(2, 1, bias=False)
    ckpts = [
        Checkpoint({"weight": torch.tensor([[0.5, -0.5]])}, lr=0.1),  # residuals -1.5, 0.5
        Checkpoint({"weight": torch.tensor([[1.0, 0.0]])}, lr=0.2),  # residuals 0, 1
    ]
    x, y = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([1.0, -1.0])
    # checkpoint 1: g(z1) = 2(-1.5)[1, 2] = [-3, -6], g(z2) = 2(0.5)[0, 1] = [0, 1]
    # checkpoint 2: g(z1) = [0, 0],                 g(z2) = 2(1)[0, 1] = [0, 2]
    tracin = TracIn(net, ckpts, squared, show_progress=False)
    self_inf = tracin.self_influence((x, y)).scores
    torch.testing.assert_close(self_inf, torch.tensor([0.1 * 45, 0.1 * 1 + 0.2 * 4]))
    inf = tracin.influence((x, y), (x, y)).scores
    torch.testing.assert_close(inf, torch.tensor([[4.5, -0.6], [-0.6, 0.9]]))
    # cosine variant: cos(g1(z1), g1(z2)) = -6 / (sqrt(45) * 1); g2(z1) = 0 contributes 0
    cosine = TracIn(net, ckpts, squared, normalize=True, show_progress=False).influence(
        (x, y), (x, y)
    )
    torch.testing.assert_close(cosine.scores[0, 1], torch.tensor(0.1 * -6 / 45**0.5))
    torch.testing.assert_close(cosine.scores[1, 1], torch.tensor(0.1 + 0.2))


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_equals_captum_tracincp(tmp_path, digits) -> None:
    from captum.influence import TracInCP, TracInCPFast

    x, y, xt, yt = digits
    net = MLP(64, (16,), 10)
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    paths = [str(tmp_path / e.file) for e in store.entries]

    def load(model: nn.Module, path: str) -> float:
        data = torch.load(path, weights_only=True)
        model.load_state_dict(data["params"], strict=False)
        return data["lr"]

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b).abs() / b.abs().max()).max())

    train = TensorDataset(x, y)
    captum = TracInCP(
        net,
        train,
        paths,
        checkpoints_load_func=load,
        loss_fn=nn.CrossEntropyLoss(reduction="none"),
        batch_size=16,
    )
    ref_self = captum.self_influence(show_progress=False)
    ref_inf = captum.influence((xt, yt))
    ours = TracIn(net, store, ce, show_progress=False, batch_size=20)
    assert rel(ours.self_influence((x, y)).scores, ref_self) <= 1e-4
    assert rel(ours.influence((xt, yt), (x, y)).scores, ref_inf) <= 1e-4
    assert ours.influence((xt, yt), (x, y)).scores.shape == (6, 48)

    # TracInCPFast uses the last layer's weight (no bias)
    fast = TracInCPFast(
        net,
        net.net[-1],
        train,
        paths,
        checkpoints_load_func=load,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        batch_size=16,
    )
    last = TracIn(net, paths, ce, parameters="net.3.weight", show_progress=False)
    assert rel(last.self_influence(train).scores, fast.self_influence(show_progress=False)) <= 1e-4
    assert rel(last.influence((xt, yt), train).scores, fast.influence((xt, yt))) <= 1e-4


def test_chunking_methods_and_data_forms_agree(tmp_path, digits) -> None:
    x, y, xt, yt = digits
    net = TinyCNN()
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    reference = TracIn(net, store, ce, method="vmap", batch_size=48, show_progress=False)
    ref_self = reference.self_influence((x, y)).scores
    ref_inf = reference.influence((xt, yt), (x, y)).scores
    for data in [
        (x, y),
        TensorDataset(x, y),
        DataLoader(TensorDataset(x, y), batch_size=10),
        [x, y],
    ]:
        for batch_size in (7, 64):
            tracin = TracIn(net, str(tmp_path), ce, batch_size=batch_size, show_progress=False)
            torch.testing.assert_close(
                tracin.self_influence(data).scores, ref_self, rtol=1e-4, atol=1e-6
            )
            torch.testing.assert_close(
                tracin.influence((xt, yt), data).scores, ref_inf, rtol=1e-4, atol=1e-6
            )
    with pytest.raises(ValueError, match="shuffles"):
        reference.self_influence(DataLoader(TensorDataset(x, y), shuffle=True))


def test_top_k(tmp_path, digits) -> None:
    x, y, xt, yt = digits
    net = TinyCNN()
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    tracin = TracIn(net, store, ce, show_progress=False)
    scores = tracin.influence((xt, yt), (x, y)).scores
    pro = tracin.top_k((xt, yt), (x, y), k=3)
    opp = tracin.top_k((xt, yt), (x, y), k=3, proponents=False)
    assert pro.proponents and not opp.proponents and pro.indices.shape == (6, 3)
    torch.testing.assert_close(pro.scores, scores.gather(1, pro.indices))
    assert torch.all(pro.scores[:, 0] == scores.max(1).values) and torch.all(
        opp.scores[:, 0] == scores.min(1).values
    )
    assert torch.all(pro.scores[:, :-1] >= pro.scores[:, 1:]) and torch.all(
        opp.scores[:, :-1] <= opp.scores[:, 1:]
    )
    with pytest.raises(ValueError, match="exceeds the 48 training examples"):
        tracin.top_k((xt, yt), (x, y), k=49)


def test_projection_is_seeded_and_unbiased(tmp_path, digits) -> None:
    x, y, _, _ = digits
    net = MLP(64, (8,), 10)
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    exact = TracIn(net, store, ce, show_progress=False).influence((x, y), (x, y)).scores
    a = (
        TracIn(net, store, ce, projection_dim=2048, seed=1, show_progress=False)
        .influence((x, y), (x, y))
        .scores
    )
    b = (
        TracIn(net, store, ce, projection_dim=2048, seed=1, show_progress=False)
        .influence((x, y), (x, y))
        .scores
    )
    c = (
        TracIn(net, store, ce, projection_dim=2048, seed=2, show_progress=False)
        .influence((x, y), (x, y))
        .scores
    )
    assert torch.equal(a, b) and not torch.equal(a, c)
    corr = torch.corrcoef(torch.stack([a.flatten(), exact.flatten()]))[0, 1]
    assert corr > 0.98


def test_cosine_bounds_and_self_influence_refused(tmp_path, digits) -> None:
    x, y, xt, yt = digits
    net = TinyCNN()
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    cosine = TracIn(net, store, ce, normalize=True, show_progress=False)
    scores = cosine.influence((x[:10], y[:10]), (x, y)).scores
    total_lr = 0.1 + 0.2
    torch.testing.assert_close(scores[:, :10].diagonal(), torch.full((10,), total_lr))
    assert scores.abs().max() <= total_lr + 1e-5
    with pytest.raises(ValueError, match="normalize=False"):
        cosine.self_influence((x, y))


def test_per_parameter_learning_rates(tmp_path, digits) -> None:
    x, y, _, _ = digits
    net = MLP(64, (8,), 10)
    values = {n: p.detach().clone() for n, p in net.named_parameters()}
    names = list(values)
    rates = {n: 0.5 if n.endswith("weight") else 2.0 for n in names}
    mixed = (
        TracIn(net, [Checkpoint(values, lr=rates)], ce, show_progress=False)
        .self_influence((x, y))
        .scores
    )
    parts = [
        TracIn(net, [Checkpoint(values, lr=lr)], ce, parameters=f"*.{kind}", show_progress=False)
        .self_influence((x, y))
        .scores
        for kind, lr in (("weight", 0.5), ("bias", 2.0))
    ]
    torch.testing.assert_close(mixed, parts[0] + parts[1])


def test_model_never_mutated(tmp_path, digits) -> None:
    x, y, xt, yt = digits
    net = TinyCNN()
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    net.zero_grad(set_to_none=True)
    net.train()
    net.features.eval()
    net.classifier[1].weight.requires_grad_(False)
    with torch.no_grad():
        net.classifier[3].bias.add_(1.0)  # differs from every checkpoint
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    modes = [m.training for m in net.modules()]
    tracin = TracIn(net, store, ce, parameters="all", projection_dim=16, show_progress=False)
    tracin.self_influence((x, y))
    tracin.top_k((xt, yt), (x, y), k=2)
    assert [m.training for m in net.modules()] == modes
    assert {n: p.requires_grad for n, p in net.named_parameters()} == flags
    assert all(torch.equal(weights[n], p) for n, p in net.named_parameters())
    assert all(p.grad is None for p in net.parameters())


def test_inference_mode_and_progress_bar(tmp_path, digits, capsys) -> None:
    x, y, _, _ = digits
    net = TinyCNN()
    store = CheckpointStore(tmp_path)
    train_checkpoints(net, x, y, store)
    expected = TracIn(net, store, ce, show_progress=False).self_influence((x, y)).scores
    assert capsys.readouterr().err == ""
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        got = TracIn(net, store, ce, show_progress=True).self_influence((xi, yi)).scores
    torch.testing.assert_close(got, expected)
    assert "TracIn self-influence" in capsys.readouterr().err


def test_label_free_reconstruction_loss(digits) -> None:
    x = digits[0].flatten(1)[:12]
    ae = nn.Sequential(nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 64))

    def recon(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out - target).pow(2).mean(1)

    ckpts = [Checkpoint.from_module(ae, 0.3)]
    tracin = TracIn(ae, ckpts, recon, parameters="0.*", targets="inputs", show_progress=False)
    grads = per_sample_grads(ae, x, recon, "0.*", targets="inputs")
    torch.testing.assert_close(
        tracin.influence(x[:3], x).scores, 0.3 * grads[:3] @ grads.T, rtol=1e-4, atol=1e-7
    )
    torch.testing.assert_close(
        tracin.self_influence(x).scores, 0.3 * grads.pow(2).sum(1), rtol=1e-4, atol=1e-7
    )


def test_fast_path_falls_back_when_samples_interact() -> None:
    class BatchMixer(nn.Module):  # samples interact through the batch mean: hooks can't see that
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.lin(x)
            return h - 0.5 * h.mean(0, keepdim=True)

    net = BatchMixer()
    x, y = torch.randn(6, 3), torch.randint(0, 2, (6,))
    ckpts = [Checkpoint.from_module(net, 1.0)]
    reference = (
        TracIn(net, ckpts, ce, method="vmap", show_progress=False).self_influence((x, y)).scores
    )
    with pytest.warns(UserWarning, match="disagrees with torch.func"):
        got = TracIn(net, ckpts, ce, show_progress=False).self_influence((x, y)).scores
    torch.testing.assert_close(got, reference)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(checkpoints=[]), ValueError, "No checkpoints"),
        (
            dict(parameters="all", checkpoints="last_only"),
            ValueError,
            "lacks the tracked parameters",
        ),
        (dict(batch_size=0), ValueError, "`batch_size`"),
        (dict(projection_dim=-1), ValueError, "`projection_dim`"),
        (dict(method="hooks"), ValueError, "`method`"),
        (dict(targets="labels_and_inputs"), ValueError, "`targets`"),
        (dict(loss_fn="ce"), TypeError, "`loss_fn` must be callable"),
        (dict(checkpoints=["/no/such/file.pt"]), ValueError, "does not exist"),
        (dict(checkpoints=[{"weight": 1}]), TypeError, "Checkpoint objects"),
    ],
)
def test_argument_errors(tmp_path, kwargs, error, match) -> None:
    net = TinyCNN()
    store = CheckpointStore(tmp_path)
    store.save(Checkpoint.from_module(net, 0.1, ["classifier.3.weight", "classifier.3.bias"]))
    options = dict(model=net, checkpoints=store, loss_fn=ce, show_progress=False)
    if kwargs.get("checkpoints") == "last_only":
        kwargs = {**kwargs, "checkpoints": store}
    options.update(kwargs)
    with pytest.raises(error, match=match):
        TracIn(**options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TracIn(net, store, ce, parameters="last", show_progress=False)  # what the store holds
