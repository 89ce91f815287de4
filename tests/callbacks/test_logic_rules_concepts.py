"""LogicRuleLogger on concept models: rules from the task head over the concept names, chosen on
predicted concepts and scored on predicted and on true concepts; checks on the concepts, not on
the images."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_xai.callbacks import LogicRuleLogger
from lightning_xai.data import ConceptDigitsDataModule
from lightning_xai.data.datasets import TensorPairDataset
from lightning_xai.logic import Rule
from lightning_xai.metrics.functional import rule_accuracy, rule_fidelity
from lightning_xai.modules import ConceptBottleneckModel, ConceptEmbeddingModel
from tests.helpers import make_trainer


def _parity() -> ConceptDigitsDataModule:
    dm = ConceptDigitsDataModule(task="parity", concept_set="identity", batch_size=64)
    dm.setup()
    return dm


def _cbm(dm: ConceptDigitsDataModule, **kwargs: Any) -> ConceptBottleneckModel:
    kwargs = {"head": "logic", "hidden": (8,), "lr": 2e-2, **kwargs}
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
    return ConceptBottleneckModel(
        encoder, dm.n_concepts, dm.n_classes, dm.concept_names, dm.class_names, **kwargs
    )


@pytest.fixture(scope="module")
def trained() -> tuple[ConceptDigitsDataModule, ConceptBottleneckModel]:
    """A logic-head CBM trained (jointly) on digit parity over the 10 identity concepts."""
    pl.seed_everything(0, verbose=False)
    dm = _parity()
    model = _cbm(dm)
    trainer = pl.Trainer(
        max_epochs=10,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, dm)
    return dm, model.eval()


def test_rules_scored_on_predicted_and_true_concepts(trained, tmp_path, tb_events) -> None:
    dm, model = trained
    cb = LogicRuleLogger(stages=("validate", "test"))
    trainer = make_trainer(
        tmp_path, callbacks=[cb], limit_val_batches=None, limit_test_batches=None
    )
    trainer.test(model, dm, verbose=False)

    # rules over the concept names, equivalent to the known rule on every valid concept vector
    assert [r.class_name for r in cb.rules] == ["odd", "even"]
    table = dm.class_concepts
    for rule, known in zip(cb.rules, dm.rules):
        assert {s.name for s in rule.expr.free_symbols} <= set(dm.concept_names)
        assert torch.equal(rule.evaluate(table), known.evaluate(table)), str(rule)

    # the scores are those of the rules evaluated directly on the test rows
    x, c, y = dm.test_dataset.tensors
    with torch.no_grad():
        predicted = model.predict_concepts(x)
        on_predicted = model.head(predicted).argmax(1)
        on_true = model.head(c).argmax(1)
    for rule, truth_scored in zip(cb.rules, cb.rules_on_true_concepts):
        assert rule.accuracy == pytest.approx(float(rule_accuracy(rule, predicted, y)))
        assert rule.fidelity == pytest.approx(float(rule_fidelity(rule, predicted, on_predicted)))
        assert truth_scored.accuracy == pytest.approx(float(rule_accuracy(rule, c, y)))
        assert truth_scored.fidelity == pytest.approx(float(rule_fidelity(rule, c, on_true)))
        assert str(truth_scored) == str(rule)
    # the true concepts are exact, so the rules are exact on them; the predictions are not
    assert all(r.accuracy == 1.0 for r in cb.rules_on_true_concepts)
    assert any(r.accuracy < 1.0 for r in cb.rules)

    events = tb_events(tmp_path)
    for key in ("accuracy", "fidelity", "accuracy_true_concepts", "fidelity_true_concepts"):
        logged = events.Scalars(f"test/logic_rule_logger/mean_{key}")
        assert len(logged) == 1
    logged = events.Scalars("test/logic_rule_logger/even/accuracy_true_concepts")[0].value
    assert logged == pytest.approx(cb.rules_on_true_concepts[1].accuracy)
    text = events.text("test/logic_rule_logger/rules")[0]
    assert "predicted concepts" in text and "true concepts" in text
    assert text.count("| class | rule | accuracy | fidelity | complexity |") == 2

    with open(f"{trainer.log_dir}/xai/logic_rule_logger/test/epoch0000/rules.json") as f:
        saved = json.load(f)
    assert [r["accuracy"] for r in saved["on_true_concepts"]] == pytest.approx(
        [r.accuracy for r in cb.rules_on_true_concepts]
    )
    assert Rule.from_dict(saved["rules"][1]).equivalent(cb.rules[1])


class _Brighter(Dataset):
    """The digits at 16x brightness (values in [0, 16]) as dicts with their own key names."""

    def __init__(self, dataset: TensorPairDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, c, y = self.dataset[i]
        return {"pixels": 16 * x, "attributes": c, "target": y}


def test_images_outside_unit_range_and_dict_batches_in_fit(tmp_path, tb_events) -> None:
    """The [0, 1] check reads the concept annotations: images in [0, 16] are fine."""
    pl.seed_everything(0, verbose=False)
    dm = _parity()
    model = _cbm(
        dm, concepts="attributes", adapter={"inputs": "pixels", "labels": "target"}, lr=1e-2
    )
    train = DataLoader(_Brighter(dm.train_dataset), batch_size=64, shuffle=True)
    val = DataLoader(_Brighter(dm.val_dataset), batch_size=64)
    cb = LogicRuleLogger(every_n_epochs=None)
    trainer = make_trainer(
        tmp_path, callbacks=[cb], max_epochs=2, limit_train_batches=None, limit_val_batches=None
    )
    trainer.fit(model, train, val)
    assert [entry["stage"] for entry in cb.history] == ["fit"]
    assert len(cb.rules_on_true_concepts) == 2
    events = tb_events(tmp_path)
    assert len(events.Scalars("fit/logic_rule_logger/mean_accuracy_true_concepts")) == 1


class _Counting(ConceptBottleneckModel):
    steps = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        type(self).steps += 1
        return super().training_step(batch, batch_idx)


def _counting(dm: ConceptDigitsDataModule) -> _Counting:
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU())
    return _Counting(encoder, dm.n_concepts, dm.n_classes, head="logic", hidden=(4,))


@pytest.mark.parametrize(("scale", "match"), [(2.0, r"true concepts in \[0, 1\]"), (None, "float")])
def test_bad_concept_annotations_fail_before_the_first_step(tmp_path, scale, match) -> None:
    dm = _parity()
    x, c, y = dm.train_dataset.tensors
    bad = c.long() if scale is None else scale * c
    loader = DataLoader(TensorPairDataset(x, bad, y), batch_size=64)
    _Counting.steps = 0
    trainer = make_trainer(tmp_path, callbacks=[LogicRuleLogger()])
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(_counting(dm), loader, loader)
    assert _Counting.steps == 0


def test_concepts_of_the_wrong_width_fail_before_the_first_step(tmp_path) -> None:
    dm = _parity()
    x, c, y = dm.train_dataset.tensors
    loader = DataLoader(TensorPairDataset(x, c[:, :7], y), batch_size=64)
    _Counting.steps = 0
    with pytest.raises(MisconfigurationException, match=r"concepts=.*\(N, 10\)"):
        make_trainer(tmp_path, callbacks=[LogicRuleLogger()]).fit(_counting(dm), loader, loader)
    assert _Counting.steps == 0


def test_concept_embedding_model_has_no_rules(tmp_path) -> None:
    dm = _parity()
    cem = ConceptEmbeddingModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 8)), 10, 2)
    with pytest.raises(MisconfigurationException, match="ConceptBottleneckModel"):
        make_trainer(tmp_path, callbacks=[LogicRuleLogger()]).fit(cem, dm)
