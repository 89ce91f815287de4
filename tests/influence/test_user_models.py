"""Per-sample gradients and TracIn on models and batches as users write them: HuggingFace BERT
with dict batches and a ``ModelOutput``, an RGB ResNet with batch norm, a two-input network,
Lightning's ``BoringModel`` without labels. Scores are compared with a brute-force loop: one
``torch.autograd.grad`` per example and checkpoint, summed with the learning rates."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.demos.boring_classes import BoringModel
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_xai.influence import Checkpoint, TracIn, per_sample_grads
from lightning_xai.influence.per_sample_grads import _grad_blocks, select_parameters
from lightning_xai.utilities.batches import BatchAdapter
from tests.user_models import (
    DictDataset,
    HFTextClassifier,
    RGBResNet,
    TwoInputNet,
    rgb_data,
    token_data,
    two_input_data,
)


def ce(scores: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(scores, y, reduction="none")


def checkpoints(model: nn.Module, lrs: tuple[float, ...] = (0.5, 0.2)) -> list[Checkpoint]:
    """One checkpoint per rate, the weights moved a little between them."""
    out = []
    g = torch.Generator().manual_seed(7)
    for lr in lrs:
        out.append(Checkpoint.from_module(model, lr=lr))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return out


def brute_grads(
    model: nn.Module, ckpt: Checkpoint, losses: Callable[[nn.Module], list[Tensor]]
) -> Tensor:
    """``(N, P)``: one ``torch.autograd.grad`` per example at the checkpoint's weights."""
    net = copy.deepcopy(model)
    net.load_state_dict({**ckpt.params, **ckpt.buffers}, strict=False)
    net.eval()
    params = [p for _, p in net.named_parameters()]
    rows = []
    for loss in losses(net):
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        rows.append(
            torch.cat(
                [(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)]
            )
        )
    return torch.stack(rows)


def brute_influence(
    model: nn.Module,
    ckpts: list[Checkpoint],
    test_losses: Callable[[nn.Module], list[Tensor]],
    train_losses: Callable[[nn.Module], list[Tensor]],
) -> Tensor:
    total = None
    for ckpt in ckpts:
        part = ckpt.lr * (
            brute_grads(model, ckpt, test_losses).double()
            @ brute_grads(model, ckpt, train_losses).double().T
        )
        total = part if total is None else total + part
    return total.float()


def rel_diff(got: Tensor, expected: Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


# ---------------------------------------------------------------------------- HF BERT
def bert_losses(data: dict[str, Tensor]) -> Callable[[nn.Module], list[Tensor]]:
    def losses(net: nn.Module) -> list[Tensor]:
        return [
            F.cross_entropy(
                net(
                    input_ids=data["input_ids"][i : i + 1],
                    attention_mask=data["attention_mask"][i : i + 1],
                ).logits,
                data["labels"][i : i + 1],
            )
            for i in range(len(data["labels"]))
        ]

    return losses


@pytest.mark.filterwarnings("ignore:Per-sample gradients. torch.func.vmap cannot batch")
def test_bert_dict_batches_equal_brute_force() -> None:
    model = HFTextClassifier()
    ckpts = checkpoints(model)
    columns = token_data(n=10, seed=1)
    test = {k: v[:3] for k, v in columns.items()}
    tracin = TracIn(model, ckpts, ce, batch_size=4, show_progress=False)
    expected = brute_influence(model, ckpts, bert_losses(test), bert_losses(columns))
    # a dict of tensors, a Dataset of dict items and a DataLoader over it give the same scores
    for train in (columns, DictDataset(columns), DataLoader(DictDataset(columns), batch_size=3)):
        got = tracin.influence(test, train).scores
        assert got.shape == (3, 10)
        assert rel_diff(got, expected) <= 1e-4
    self_scores = tracin.self_influence(DictDataset(test)).scores
    assert rel_diff(self_scores, torch.diagonal(expected[:, :3])) <= 1e-4


@pytest.mark.filterwarnings("ignore:Per-sample gradients. torch.func.vmap cannot batch")
def test_bert_token_ids_give_embedding_gradients() -> None:
    model = HFTextClassifier()
    batch = token_data(n=4, seed=2)
    names = select_parameters(model)
    grads = per_sample_grads(model, batch, ce, "bert.bert.embeddings.word_embeddings.weight")
    assert grads.shape == (4, 20 * 16)
    # only the rows of tokens that occur in an example get a gradient
    rows = grads.reshape(4, 20, 16).abs().sum(-1) > 0
    for i in range(4):
        used = set(batch["input_ids"][i].tolist())
        assert set(torch.nonzero(rows[i]).flatten().tolist()) <= used
        assert rows[i].any()
    # structured (Linear hooks) and torch.func gradients agree on every parameter
    fast = _grad_blocks(model, batch, ce, names, targets="labels", values={})
    slow = _grad_blocks(model, batch, ce, names, targets="labels", values={}, fast=False)
    reference = slow.flatten(names)
    assert fast.factored  # the classifier's weight stays factored
    torch.testing.assert_close(fast.flatten(names), reference, rtol=1e-4, atol=1e-6)


def test_bert_without_labels_names_targets_and_adapter() -> None:
    model = HFTextClassifier()
    batch = {k: v for k, v in token_data(n=2).items() if k != "labels"}
    with pytest.raises(ValueError, match="`targets='labels'` needs labels.*BatchAdapter\\(labels="):
        per_sample_grads(model, batch, ce)


# ---------------------------------------------------------------------------- two inputs
def two_losses(data: tuple[Tensor, ...], use_features: bool = True):
    image, features, y = data

    def losses(net: nn.Module) -> list[Tensor]:
        return [
            F.cross_entropy(
                net(image[i : i + 1], features[i : i + 1] if use_features else None), y[i : i + 1]
            )
            for i in range(len(y))
        ]

    return losses


@pytest.mark.parametrize(
    "adapter", [None, BatchAdapter(inputs=(0, 1), labels=2)], ids=["default", "two_inputs"]
)
@pytest.mark.parametrize("method", ["auto", "vmap"])
def test_two_input_net_equals_brute_force(adapter, method) -> None:
    torch.manual_seed(0)
    model = TwoInputNet()
    ckpts = checkpoints(model)
    data = two_input_data(n=12)
    test = tuple(t[:4] for t in data.tensors)
    tracin = TracIn(
        model, ckpts, ce, batch_size=5, show_progress=False, adapter=adapter, method=method
    )
    expected = brute_influence(model, ckpts, two_losses(test), two_losses(data.tensors))
    got = tracin.influence(test, data).scores
    assert rel_diff(got, expected) <= 1e-4
    # the features really reach the model: without them the scores differ
    without = brute_influence(
        model, ckpts, two_losses(test, False), two_losses(data.tensors, False)
    )
    assert rel_diff(without, expected) > 1e-2


def test_two_input_labels_checked_against_scores() -> None:
    model = TwoInputNet()
    image, features, y = two_input_data(n=4).tensors
    adapter = BatchAdapter(inputs=(0, 1), labels=2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        per_sample_grads(model, (image, features, y + 2), ce, adapter=adapter)


# ---------------------------------------------------------------------------- RGB + batch norm
def test_rgb_resnet_batchnorm_equals_loop() -> None:
    torch.manual_seed(0)
    model = RGBResNet().train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    ckpts = checkpoints(model, (0.3,))
    x, y = rgb_data(n=6).tensors
    losses = lambda net: [F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]) for i in range(6)]  # noqa: E731
    expected = brute_influence(model, ckpts, losses, losses)
    got = TracIn(model, ckpts, ce, batch_size=4, show_progress=False).influence((x, y), (x, y))
    assert rel_diff(got.scores, expected) <= 1e-4
    assert model.training and all(m.training for m in model.modules())


# ---------------------------------------------------------------------------- no labels
def test_boring_model_label_free() -> None:
    model = BoringModel()
    ckpts = checkpoints(model)
    x = torch.randn(7, 32)

    def recon(scores: Tensor, target: Tensor) -> Tensor:
        return (scores - target[:, :2]).pow(2).sum(1)

    losses = lambda net: [recon(net(x[i : i + 1]), x[i : i + 1]).sum() for i in range(7)]  # noqa: E731
    expected = brute_influence(model, ckpts, losses, losses)
    tracin = TracIn(model, ckpts, recon, targets="inputs", show_progress=False)
    assert rel_diff(tracin.influence(x[:3], x).scores, expected[:3]) <= 1e-4
    assert rel_diff(tracin.self_influence(x).scores, expected.diagonal()) <= 1e-4
    with pytest.raises(ValueError, match="targets='inputs'"):
        TracIn(model, ckpts, recon, show_progress=False).self_influence(x)
