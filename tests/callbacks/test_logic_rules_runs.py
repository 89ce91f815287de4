"""LogicRuleLogger with user data: plain loaders, its own datamodule names, checkpoints, dict
batches, two loggers, and the configuration errors raised before the first training step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, TensorDataset

from lightning_xai.callbacks import LogicRuleLogger
from lightning_xai.metrics.functional import rule_accuracy
from lightning_xai.modules import LogicExplainer
from lightning_xai.utilities import BatchAdapter
from tests.helpers import make_trainer
from tests.user_models import DictDataset


def xor_rows(n: int = 480, seed: int = 0, n_concepts: int = 4) -> TensorDataset:
    """0/1 float concepts; the class is ``c0 XOR c1``."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, 2, (n, n_concepts), generator=g).float()
    return TensorDataset(c, (c[:, 0] != c[:, 1]).long())


class XorDataModule(pl.LightningDataModule):
    """A user's datamodule naming its splits its own way (no ``*_dataset`` attributes)."""

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.xor_fit = xor_rows(seed=1)
        if stage in ("fit", "validate"):
            self.xor_holdout = xor_rows(seed=2)
        if stage == "test":
            self.xor_final = xor_rows(seed=3)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.xor_fit, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.xor_holdout, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.xor_final, batch_size=self.batch_size)


class CountingExplainer(LogicExplainer):
    """Counts training steps, to show that errors come before the first one."""

    steps = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        type(self).steps += 1
        return super().training_step(batch, batch_idx)


def _trainer(tmp_path: Path, callbacks: list, **kwargs: Any) -> pl.Trainer:
    kwargs = {"limit_train_batches": 1.0, "limit_val_batches": 1.0, **kwargs}
    return make_trainer(tmp_path, callbacks=callbacks, limit_test_batches=1.0, **kwargs)


def _loader(data: Any, shuffle: bool = False) -> DataLoader:
    return DataLoader(data, batch_size=32, shuffle=shuffle)


def test_fit_then_test_with_plain_loaders(tmp_path, tb_events) -> None:
    pl.seed_everything(0, verbose=False)
    cb = LogicRuleLogger()
    module = LogicExplainer(4, 2)
    trainer = _trainer(tmp_path, [cb], max_epochs=5)
    trainer.fit(module, _loader(xor_rows(seed=1), True), _loader(xor_rows(seed=2)))
    test = xor_rows(seed=3)
    trainer.test(module, _loader(test), verbose=False)  # training rows: the last fit's

    events = tb_events(tmp_path)
    assert len(events.text("fit/logic_rule_logger/rules")) == 5
    (table,) = events.text("test/logic_rule_logger/rules")
    assert cb.rules[1].to_markdown() in table
    logged = events.Scalars("test/logic_rule_logger/y1/accuracy")[-1].value
    x, y = test.tensors
    assert logged == pytest.approx(float(rule_accuracy(cb.rules[1], x, y)), abs=1e-6)
    assert logged > 0.9  # XOR is learnt and read off in 5 epochs


def test_validate_and_test_from_a_checkpoint_with_its_own_datamodule(tmp_path, tb_events) -> None:
    pl.seed_everything(0, verbose=False)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = _trainer(tmp_path / "fit", [ckpt], max_epochs=3, enable_checkpointing=True)
    first.fit(LogicExplainer(4, 2), datamodule=XorDataModule())

    cb = LogicRuleLogger(stages=("validate", "test"))
    trainer = _trainer(tmp_path / "eval", [cb])
    module = LogicExplainer.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    dm = XorDataModule()
    trainer.validate(module, datamodule=dm, verbose=False)
    trainer.test(module, datamodule=dm, verbose=False)
    assert [entry["stage"] for entry in cb.history] == ["validate", "test"]
    events = tb_events(tmp_path / "eval")
    assert events.text("validate/logic_rule_logger/rules")
    assert events.Scalars("test/logic_rule_logger/mean_fidelity")[-1].value > 0.0


def test_two_loggers_write_their_own_folders(tmp_path, tb_events) -> None:
    pl.seed_everything(0, verbose=False)
    train, val = _loader(xor_rows(seed=1), True), _loader(xor_rows(seed=2))
    both = LogicRuleLogger(name="rules_all", stages=("fit",))
    train_only = LogicRuleLogger(name="rules_train", stages=("fit",), fit_splits=("train",))
    trainer = _trainer(tmp_path, [both, train_only], max_epochs=1)
    trainer.fit(LogicExplainer(4, 2), train, val)
    root = Path(trainer.log_dir) / "xai"
    for name in ("rules_all", "rules_train"):
        with open(root / name / "history.json") as f:
            assert [entry["stage"] for entry in json.load(f)] == ["fit"]
        assert tb_events(tmp_path).text(f"fit/{name}/rules")
    assert not (root / "logic_rule_logger").exists()

    # the same name on different schedules: refused at setup, before any training step
    twins = [LogicRuleLogger(stages=("fit",)), LogicRuleLogger(stages=("fit", "test"))]
    trainer = _trainer(tmp_path, twins)
    with pytest.raises(MisconfigurationException, match="share `name='logic_rule_logger'`"):
        trainer.fit(LogicExplainer(4, 2), train, val)
    assert trainer.global_step == 0


def test_dict_batches_through_the_adapter(tmp_path, tb_events) -> None:
    pl.seed_everything(0, verbose=False)

    def rows(seed: int) -> DictDataset:
        c, y = xor_rows(seed=seed).tensors
        return DictDataset({"concepts": c, "target": y})

    adapter = BatchAdapter(inputs="concepts", labels="target")
    cb = LogicRuleLogger(adapter=adapter, stages=("fit",))
    module = LogicExplainer(4, 2, adapter={"inputs": "concepts", "labels": "target"})
    assert module.hparams.adapter == {
        "inputs": "concepts",
        "labels": "target",
        "forward_kwargs": "auto",
        "output": None,
    }
    trainer = _trainer(tmp_path, [cb], max_epochs=5)
    trainer.fit(module, _loader(rows(1), True), _loader(rows(2)))
    assert tb_events(tmp_path).Scalars("fit/logic_rule_logger/y1/accuracy")[-1].value > 0.9


def test_no_training_rows_names_train_data(tmp_path) -> None:
    val = _loader(xor_rows(seed=2))
    trainer = _trainer(tmp_path, [LogicRuleLogger(stages=("validate",))])
    with pytest.raises(MisconfigurationException, match="train_data="):
        trainer.validate(LogicExplainer(4, 2), val, verbose=False)
    # given explicitly, the same validate runs
    cb = LogicRuleLogger(stages=("validate",), train_data=xor_rows(seed=1))
    _trainer(tmp_path, [cb]).validate(LogicExplainer(4, 2), val, verbose=False)
    assert len(cb.history) == 1 and len(cb.rules) == 2


@pytest.mark.parametrize(
    "concepts, match",
    [
        (lambda c: c * 3.0 - 1.0, r"in \[0, 1\].*\[-1, 2\]"),
        (lambda c: c.long(), "floats in"),
    ],
)
def test_bad_concepts_fail_before_the_first_training_step(tmp_path, concepts, match) -> None:
    c, y = xor_rows(seed=1).tensors
    data = _loader(TensorDataset(concepts(c), y))
    CountingExplainer.steps = 0
    trainer = _trainer(tmp_path, [LogicRuleLogger(stages=("fit",), fit_splits=("train",))])
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(CountingExplainer(4, 2), data, data)
    assert CountingExplainer.steps == 0 and trainer.global_step == 0


def test_labels_out_of_range_fail_before_the_first_training_step(tmp_path) -> None:
    c, y = xor_rows(seed=1).tensors
    data = _loader(TensorDataset(c, y + 1))  # classes 1, 2 for a two-class model
    CountingExplainer.steps = 0
    trainer = _trainer(tmp_path, [LogicRuleLogger(stages=("fit",))])
    with pytest.raises(MisconfigurationException, match=r"labels must lie in \[0, 1\]"):
        trainer.fit(CountingExplainer(4, 2), data, data)
    assert CountingExplainer.steps == 0
