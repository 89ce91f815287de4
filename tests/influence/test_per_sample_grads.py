from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.influence.per_sample_grads import (
    _grad_blocks,
    eval_mode,
    per_sample_grads,
    select_parameters,
)
from tests.helpers import TinyCNN


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def loop_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str], loss=ce
) -> torch.Tensor:
    """Reference: one backward pass per sample, in eval mode."""
    params = dict(model.named_parameters())
    rows = []
    with eval_mode(model):
        for i in range(len(x)):
            loss_i = loss(model(x[i : i + 1]), y[i : i + 1]).sum()
            grads = torch.autograd.grad(loss_i, [params[n] for n in names])
            rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


class BNNet(nn.Module):
    """Strided conv, batch norm, dropout, and a Linear applied over an extra dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.seq = nn.Linear(4, 5)
        self.head = nn.Linear(15, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.bn(self.conv(x))))  # (B, 3, 4, 4)
        return self.head(torch.tanh(self.seq(h.mean(-1))).flatten(1))  # seq sees (B, 3, 4)


def test_select_parameters_forms() -> None:
    net = TinyCNN()
    all_names = [n for n, _ in net.named_parameters()]
    assert select_parameters(net) == all_names
    assert select_parameters(net, "all") == all_names
    assert select_parameters(net, "last") == ["classifier.3.weight", "classifier.3.bias"]
    assert select_parameters(net, "classifier.*.weight") == [
        "classifier.1.weight",
        "classifier.3.weight",
    ]
    assert select_parameters(net, "features") == ["features.0.weight", "features.0.bias"]
    net.features.requires_grad_(False)
    assert select_parameters(net) == [n for n in all_names if n.startswith("classifier")]
    assert select_parameters(net, "all") == all_names


@pytest.mark.parametrize(
    ("parameters", "error", "match"),
    [
        ("nope.*", ValueError, "matches no parameter"),
        (3, TypeError, "must be None"),
        ([], ValueError, "selects no"),
    ],
)
def test_select_parameters_errors(parameters, error, match) -> None:
    with pytest.raises(error, match=match):
        select_parameters(TinyCNN(), parameters)


def test_matches_per_sample_autograd_loop() -> None:
    torch.manual_seed(1)
    net = TinyCNN()
    x, y = torch.rand(5, 1, 8, 8), torch.randint(0, 10, (5,))
    names = select_parameters(net, "all")
    got = per_sample_grads(net, (x, y), ce)
    assert got.shape == (5, sum(p.numel() for p in net.parameters()))
    torch.testing.assert_close(got, loop_grads(net, x, y, names), rtol=1e-5, atol=1e-6)


def test_buffers_dropout_and_values_override() -> None:
    torch.manual_seed(2)
    net = BNNet()
    with torch.no_grad():  # non-trivial running statistics
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 4, (4,))
    names = select_parameters(net)
    torch.testing.assert_close(per_sample_grads(net, (x, y), ce), loop_grads(net, x, y, names))
    # values= replaces parameters and buffers without touching the model
    other = BNNet()
    values = {**dict(other.named_parameters()), **dict(other.named_buffers())}
    expected = loop_grads(other, x, y, names)
    torch.testing.assert_close(per_sample_grads(net, (x, y), ce, values=values), expected)


def test_label_free_targets_inputs() -> None:
    torch.manual_seed(3)
    ae = nn.Sequential(nn.Linear(6, 2), nn.Tanh(), nn.Linear(2, 6))
    x = torch.randn(4, 6)

    def recon(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out - target).pow(2).sum(1)

    got = per_sample_grads(ae, x, recon, "0.*", targets="inputs")
    ref = loop_grads(ae, x, x, ["0.weight", "0.bias"], loss=recon)
    torch.testing.assert_close(got, ref)
    # a tuple batch (x, y) with targets="inputs" ignores y
    torch.testing.assert_close(
        per_sample_grads(ae, (x, torch.zeros(4)), recon, "0.*", targets="inputs"), ref
    )


def test_model_state_untouched_and_inference_mode() -> None:
    net = TinyCNN().train()
    net.classifier[1].requires_grad_(False)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    flags = {n: p.requires_grad for n, p in net.named_parameters()}
    with torch.inference_mode():
        x, y = torch.rand(3, 1, 8, 8), torch.randint(0, 10, (3,))
        got = per_sample_grads(net, (x, y), ce, "all")
    assert got.shape[0] == 3 and torch.isfinite(got).all()
    assert net.training and all(m.training for m in net.modules())
    assert {n: p.requires_grad for n, p in net.named_parameters()} == flags
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[n], p) for n, p in net.named_parameters())


@pytest.mark.parametrize(
    ("loss", "batch", "targets", "error", "match"),
    [
        (lambda o, y: F.cross_entropy(o, y), None, "labels", ValueError, "one loss per sample"),
        (ce, "x_only", "labels", ValueError, "targets='inputs'"),
        (ce, None, "both", ValueError, "`targets` must be one of"),
        (ce, "dict", "labels", ValueError, "BatchAdapter\\(labels="),
        (ce, "text", "labels", ValueError, "A batch must be"),
        (ce, "bad_labels", "labels", ValueError, "labels must lie in"),
    ],
)
def test_errors(loss, batch, targets, error, match) -> None:
    net = TinyCNN()
    x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 10, (2,))
    data = {
        "x_only": x,
        "dict": {"x": x},
        "text": "x",
        "bad_labels": (x, torch.tensor([0, 10])),
    }.get(batch, (x, y))
    with pytest.raises(error, match=match):
        per_sample_grads(net, data, loss, targets=targets)


class Shared(nn.Module):
    """A Linear layer reused twice, a shared (tied) weight, a strided conv and a 3-D Linear input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1)
        self.conv2 = nn.Conv2d(3, 3, 2, dilation=2, bias=False)
        self.twice = nn.Linear(3, 3)
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 3)
        self.tied = nn.Linear(4, 3)
        self.tied2 = nn.Linear(4, 3)
        self.tied2.weight = self.tied.weight
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.norm = nn.LayerNorm(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv(x))))  # (B, 3, 2, 2)
        h = h.flatten(2).transpose(1, 2)  # (B, 4, 3): a sequence for the Linear layers
        h = self.twice(torch.tanh(self.twice(h)))
        h = self.norm(self.b(torch.tanh(self.a(h)))).mean(1)  # (B, 3)
        z = torch.cat([h, h[:, :1]], 1)
        return self.scale * (self.tied(z) + self.tied2(z.flip(1)))


@pytest.mark.parametrize("model", [TinyCNN, Shared, BNNet])
def test_fast_blocks_equal_torch_func(model) -> None:
    torch.manual_seed(4)
    net = model()
    x = torch.randn(5, 2 if model is Shared else 1, 8, 8)
    y = torch.randint(0, 3, (5,))
    names = select_parameters(net)
    reference = per_sample_grads(net, (x, y), ce)
    fast = _grad_blocks(net, (x, y), ce, names, targets="labels", values={})
    slow = _grad_blocks(net, (x, y), ce, names, targets="labels", values={}, fast=False)
    torch.testing.assert_close(fast.flatten(names), reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.sq_norms(), reference.pow(2).sum(1), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.dot(fast), reference @ reference.T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(slow.dot(slow), reference @ reference.T, rtol=1e-4, atol=1e-5)
    assert not slow.factored
    if model is TinyCNN:  # both Linear weights stay factored
        assert [n for n, _, _ in fast.factored] == ["classifier.1.weight", "classifier.3.weight"]
