"""LogicRuleLogger through a real Trainer: TensorBoard text and scalars, files, resume."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_xai.callbacks import LogicRuleLogger
from lightning_xai.data import XORDataModule
from lightning_xai.logic import Rule
from lightning_xai.metrics.functional import rule_accuracy
from lightning_xai.modules import LogicExplainer
from tests.helpers import TinyClassifier, make_trainer, tiny_digits

HEADER = "| class | rule | accuracy | fidelity | complexity |"


def _xor() -> XORDataModule:
    return XORDataModule(n_samples=300, n_noise_concepts=2, batch_size=32)


def _trainer(tmp_path, callbacks, **kwargs) -> pl.Trainer:
    kwargs = {"limit_train_batches": 1.0, "limit_val_batches": 1.0, **kwargs}
    return make_trainer(tmp_path, callbacks=callbacks, limit_test_batches=1.0, **kwargs)


def test_fit_and_test_log_tables_scalars_and_json(tmp_path, tb_events) -> None:
    pl.seed_everything(0, verbose=False)
    dm, cb = _xor(), LogicRuleLogger()
    module = LogicExplainer(dm.n_concepts, dm.n_classes)
    trainer = _trainer(tmp_path, [cb], max_epochs=3)
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)

    events = tb_events(tmp_path)
    tables = events.text("fit/logic_rule_logger/rules")
    assert len(tables) == 3 and all(table.startswith(HEADER) for table in tables)
    assert len(events.text("test/logic_rule_logger/rules")) == 1
    fit_runs = [entry for entry in cb.history if entry["stage"] == "fit"]
    assert [entry["epoch"] for entry in fit_runs] == [0, 1, 2]
    for key in ("accuracy", "fidelity", "complexity"):
        logged = [e.value for e in events.Scalars(f"fit/logic_rule_logger/y1/{key}")]
        assert logged == pytest.approx([entry["rules"][1][key] for entry in fit_runs])
        assert len(events.Scalars(f"test/logic_rule_logger/mean_{key}")) == 1
    # the last table shows the last rules
    assert cb.rules[1].to_markdown() in events.text("test/logic_rule_logger/rules")[0]

    root = trainer.log_dir + "/xai/logic_rule_logger"
    for epoch in range(3):
        with open(f"{root}/fit/epoch{epoch:04d}/rules.json") as f:
            saved = json.load(f)
        assert saved == fit_runs[epoch]
    with open(f"{root}/history.json") as f:
        history = json.load(f)
    assert [entry["stage"] for entry in history] == ["fit", "fit", "fit", "test"]
    assert [Rule.from_dict(r) for r in history[-1]["rules"]] == cb.rules


def test_rules_are_chosen_on_train_and_val_rows_only(tmp_path) -> None:
    pl.seed_everything(0, verbose=False)
    dm = _xor()
    module = LogicExplainer(dm.n_concepts, dm.n_classes)
    _trainer(tmp_path, [], max_epochs=5).fit(module, datamodule=dm)
    clean = dm.test_dataset.y.clone()
    dm.test_dataset.y = 1 - clean  # every test label is wrong

    cb = LogicRuleLogger(stages=("validate", "test"))
    trainer = _trainer(tmp_path, [cb])
    trainer.validate(module, datamodule=dm, verbose=False)
    chosen_on_val = [str(rule) for rule in cb.rules]
    trainer.test(module, datamodule=dm, verbose=False)
    # the same rules: corrupted test rows did not influence the choice ...
    assert [str(rule) for rule in cb.rules] == chosen_on_val
    # ... they are only measured there
    x = dm.test_dataset.x
    for rule in cb.rules:
        assert rule.accuracy == pytest.approx(1.0 - float(rule_accuracy(rule, x, clean)))
    assert cb.rules[1].accuracy < 0.5


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_rule_history_survives_resume(tmp_path) -> None:
    pl.seed_everything(0, verbose=False)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    cb = LogicRuleLogger(stages=("fit",))
    trainer = _trainer(tmp_path, [cb, ckpt], enable_checkpointing=True, max_epochs=2)
    dm = _xor()
    trainer.fit(LogicExplainer(dm.n_concepts, dm.n_classes), datamodule=dm)
    saved = [dict(entry) for entry in cb.history]

    resumed = LogicRuleLogger(stages=("fit",))
    ckpt = ModelCheckpoint(dirpath=tmp_path / "resumed", save_last=True)
    trainer = _trainer(tmp_path, [resumed, ckpt], enable_checkpointing=True, max_epochs=3)
    trainer.fit(
        LogicExplainer(dm.n_concepts, dm.n_classes),
        datamodule=_xor(),
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
    )
    assert [entry["epoch"] for entry in resumed.history] == [0, 1, 2]
    assert resumed.history[:2] == saved
    with open(trainer.log_dir + "/xai/logic_rule_logger/history.json") as f:
        assert [entry["epoch"] for entry in json.load(f)] == [0, 1, 2]
    state = torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)
    (callback_state,) = [v for k, v in state["callbacks"].items() if "LogicRuleLogger" in k]
    assert callback_state["history"] == resumed.history


def test_load_state_dict_restores_latest_rules() -> None:
    rule = Rule.from_string("c0 & ~c1", ["c0", "c1"], class_index=1).with_metrics(1.0, 0.5)
    cb = LogicRuleLogger()
    cb.load_state_dict(
        {"history": [{"stage": "fit", "epoch": 0, "step": 3, "rules": [rule.to_dict()]}]}
    )
    assert cb.rules == [rule]


def test_needs_a_module_with_explain(tmp_path) -> None:
    trainer = make_trainer(tmp_path, callbacks=[LogicRuleLogger()])
    with pytest.raises(MisconfigurationException, match="explain"):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fit_splits": ("train", "test")}, "fit_splits"),
        ({"fit_splits": ()}, "fit_splits"),
        ({"options": {"max_concepts": 3}}, "options"),
        ({"batch_size": 0}, "batch_size"),
        ({"stages": ("predict",)}, "stages"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        LogicRuleLogger(**kwargs)
