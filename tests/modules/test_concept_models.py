"""Concept bottleneck / embedding models trained through a real Trainer."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_xai.callbacks import LogicRuleLogger
from lightning_xai.concepts import intervention_curves
from lightning_xai.data import ConceptDigitsDataModule
from lightning_xai.modules import ConceptBottleneckModel, ConceptEmbeddingModel
from tests.helpers import make_trainer


def _encoder() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())


def _cbm(dm: ConceptDigitsDataModule, **kwargs) -> ConceptBottleneckModel:
    kwargs.setdefault("lr", 1e-2)
    return ConceptBottleneckModel(
        _encoder(), dm.n_concepts, dm.n_classes, dm.concept_names, dm.class_names, **kwargs
    )


@pytest.mark.parametrize("cls", [ConceptBottleneckModel, ConceptEmbeddingModel])
def test_learns_concepts_and_task_and_logs_every_metric(cls, tmp_path, tb_events) -> None:
    dm = ConceptDigitsDataModule(task="parity", batch_size=64)
    extra = {"embedding_size": 4} if cls is ConceptEmbeddingModel else {}
    model = cls(_encoder(), dm.n_concepts, dm.n_classes, lr=1e-2, **extra)
    trainer = make_trainer(
        tmp_path,
        max_epochs=5,
        limit_train_batches=None,
        limit_val_batches=None,
        limit_test_batches=None,
    )
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    events = tb_events(tmp_path)
    for stage in ("train", "val", "test"):
        for key in ("acc", "concept_acc", "concept_auc", "concept_loss", "task_loss"):
            assert f"{stage}/{key}" in events.tags()["scalars"], (stage, key)
    assert events.Scalars("val/acc")[-1].value > 0.75
    assert events.Scalars("val/concept_auc")[-1].value > 0.85
    assert events.Scalars("test/concept_acc")[-1].value > 0.85
    # the logged task accuracy is the model's own
    x, c, y = dm.test_dataset.tensors
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert events.Scalars("test/acc")[-1].value == pytest.approx(acc, abs=1e-6)
    if cls is ConceptEmbeddingModel:  # trained with RandInt: corrections help at once
        full = intervention_curves(model.eval(), x, c, y, strategies=("random",))[0].accuracy[-1]
        assert full > acc


class _Snapshots(pl.Callback):
    def __init__(self) -> None:
        self.head: list[list[torch.Tensor]] = []
        self.encoder: list[list[torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.head.append([p.detach().clone() for p in pl_module.head.parameters()])
        self.encoder.append([p.detach().clone() for p in pl_module.network.encoder.parameters()])


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_sequential_trains_concepts_first_then_only_the_head(tmp_path) -> None:
    dm = ConceptDigitsDataModule(task="parity", batch_size=128)
    model = _cbm(dm, training_mode="sequential")  # concept_epochs: half of max_epochs
    head0 = [p.detach().clone() for p in model.head.parameters()]
    snaps = _Snapshots()
    make_trainer(tmp_path, max_epochs=4, limit_val_batches=0, callbacks=[snaps]).fit(model, dm)
    assert model.concept_epochs() == 2
    assert _same(head0, snaps.head[0]) and _same(head0, snaps.head[1])
    assert not _same(snaps.encoder[0], snaps.encoder[1])
    assert _same(snaps.encoder[1], snaps.encoder[3])
    assert not _same(snaps.head[1], snaps.head[3])


def test_independent_head_gets_no_gradient_through_the_encoder(tmp_path) -> None:
    dm = ConceptDigitsDataModule(task="parity", batch_size=32)
    dm.setup()
    model = _cbm(dm, training_mode="independent", concept_loss_weight=0.0)
    model.train()
    loss = model.training_step(next(iter(dm.train_dataloader())), 0)
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.network.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.head.parameters())


class _DictDigits(Dataset):
    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        x, c, y = self.dataset[i]
        return {"pixel_values": x, "attributes": c, "labels": y}


def test_dict_batches_through_the_adapter(tmp_path) -> None:
    dm = ConceptDigitsDataModule(task="prime", batch_size=32)
    dm.setup()
    model = _cbm(dm, concepts="attributes", adapter={"inputs": "pixel_values"})
    loader = DataLoader(_DictDigits(dm.val_dataset), batch_size=32)
    make_trainer(tmp_path, max_epochs=1).fit(model, loader, loader)
    assert model.hparams.adapter == {
        "inputs": "pixel_values",
        "labels": "auto",
        "forward_kwargs": "auto",
        "output": None,
    }
    out = model.predict_step(next(iter(loader)), 0)
    assert out["concepts"].shape == (32, dm.n_concepts)


def test_configuration_errors(tmp_path) -> None:
    dm = ConceptDigitsDataModule(task="parity", batch_size=16)
    with pytest.raises(ValueError, match="training_mode"):
        _cbm(dm, training_mode="alternating")
    with pytest.raises(ValueError, match="head"):
        _cbm(dm, head="tree")
    with pytest.raises(ValueError, match="head='logic'"):
        ConceptEmbeddingModel(_encoder(), dm.n_concepts, 2, head="logic")
    wrong = ConceptBottleneckModel(_encoder(), dm.n_concepts + 1, 2)
    with pytest.raises(ValueError, match="concepts="):
        make_trainer(tmp_path).fit(wrong, dm)
    sequential = _cbm(dm, training_mode="sequential")
    with pytest.raises(ValueError, match="concept_epochs="):
        make_trainer(tmp_path, max_epochs=-1, max_steps=3).fit(sequential, dm)


def test_logic_head_rules_through_logic_rule_logger(tmp_path, tb_events) -> None:
    torch.manual_seed(0)
    dm = ConceptDigitsDataModule(task="parity", concept_set="identity", batch_size=64)
    model = _cbm(dm, head="logic", hidden=(8,), lr=2e-2, training_mode="independent")
    trainer = make_trainer(tmp_path, max_epochs=8, limit_train_batches=None, limit_val_batches=0)
    trainer.fit(model, dm)
    trainer = make_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=None,
        callbacks=[LogicRuleLogger(stages=("validate",))],  # reads (x, concepts, y) itself
    )
    trainer.validate(model, dm, verbose=False)
    rules = trainer.callbacks[0].rules
    assert [r.class_name for r in rules] == ["odd", "even"]
    assert all(set(map(str, r.expr.free_symbols)) <= set(dm.concept_names) for r in rules)
    assert tb_events(tmp_path).text("validate/logic_rule_logger/rules")
    # rules read on the true concepts match the known rule on every class-level concept vector
    rules = model.explain(dm.train_dataset.y, dm.train_dataset.extra[0], concepts_given=True)
    table = dm.class_concepts
    for rule, truth in zip(rules, dm.rules):
        assert torch.equal(rule.evaluate(table), truth.evaluate(table)), str(rule)
