"""Logic explainers trained with a real Trainer recover the true rules exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lightning_xai.data import DNFDataModule, XORDataModule
from lightning_xai.modules import LogicExplainer, MLPLogicExplainer
from tests.helpers import make_trainer

DNF_RULES = ["(c0 & c1) | (c2 & ~c3)", "(c4 & ~c5 & c6) | c7", "(c8 & c9) | (~c10 & c11 & c12)"]


def _fit(
    module: pl.LightningModule, dm: pl.LightningDataModule, tmp: Path, epochs: int
) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    trainer = make_trainer(
        tmp, max_epochs=epochs, limit_train_batches=1.0, limit_val_batches=1.0, logger=False
    )
    trainer.fit(module, datamodule=dm)
    return trainer


def _fit_rows(dm: XORDataModule | DNFDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.cat([dm.train_dataset.x, dm.val_dataset.x]),
        torch.cat([dm.train_dataset.y, dm.val_dataset.y]),
    )


@pytest.fixture(scope="module")
def xor(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    dm = XORDataModule(n_samples=1000, n_noise_concepts=8, batch_size=64)
    pl.seed_everything(0, verbose=False)
    module = LogicExplainer(dm.n_concepts, dm.n_classes, class_names=["same", "different"])
    trainer = _fit(module, dm, tmp_path_factory.mktemp("xor"), epochs=10)
    return module, dm, trainer


def test_xor_with_noise_concepts_gives_the_exact_rule(xor: tuple) -> None:
    module, dm, _ = xor
    x, y = _fit_rows(dm)
    rules = module.explain(x, y, eval_x=dm.test_dataset.x, eval_y=dm.test_dataset.y)
    assert [rule.class_name for rule in rules] == ["same", "different"]
    for rule, truth in zip(rules, dm.rules):
        assert rule.equivalent(truth), str(rule)
        assert rule.complexity == 4
        assert rule.accuracy == 1.0 and rule.fidelity == 1.0
    assert rules[1].to_markdown() == "(c0 ∧ ¬c1) ∨ (¬c0 ∧ c1)"


def test_explain_without_labels_explains_predictions(xor: tuple) -> None:
    module, dm, _ = xor
    module.train()
    rules = module.explain(dm.val_dataset.x)
    assert module.training  # the mode is restored
    assert all(rule.accuracy is None for rule in rules)
    assert all(rule.fidelity == 1.0 for rule in rules)
    assert all(rule.equivalent(truth) for rule, truth in zip(rules, dm.rules))


def test_checkpoint_round_trip_keeps_rules(xor: tuple, tmp_path: Path) -> None:
    module, dm, trainer = xor
    path = tmp_path / "explainer.ckpt"
    trainer.save_checkpoint(path)
    restored = LogicExplainer.load_from_checkpoint(path, weights_only=True)
    assert restored.class_names == ["same", "different"]
    x, y = _fit_rows(dm)
    assert [str(r) for r in restored.explain(x, y)] == [str(r) for r in module.explain(x, y)]


def test_dnf_twenty_concepts_three_classes_all_exact(tmp_path: Path) -> None:
    dm = DNFDataModule(n_concepts=20, rules=DNF_RULES, n_samples=5000, batch_size=64)
    pl.seed_everything(0, verbose=False)
    module = LogicExplainer(dm.n_concepts, dm.n_classes, task="multilabel")
    _fit(module, dm, tmp_path, epochs=10)
    x, y = _fit_rows(dm)
    rules = module.explain(x, y, eval_x=dm.test_dataset.x, eval_y=dm.test_dataset.y)
    for rule, truth in zip(rules, dm.rules):
        assert rule.equivalent(truth), f"{rule} is not {truth}"
        assert rule.accuracy == 1.0
    assert [rule.complexity for rule in rules] == [4, 4, 5]


def test_mlp_variant_extracts_rules_the_same_way(tmp_path: Path) -> None:
    # XOR with 8 noise concepts as a one-label multilabel task
    xor = "(c0 & ~c1) | (~c0 & c1)"
    dm = DNFDataModule(n_concepts=10, rules=[xor], n_samples=1000, batch_size=64)
    pl.seed_everything(0, verbose=False)
    module = MLPLogicExplainer(dm.n_concepts, dm.n_classes, task="multilabel")
    _fit(module, dm, tmp_path, epochs=15)
    x, y = _fit_rows(dm)
    (rule,) = module.explain(x, y, eval_x=dm.test_dataset.x, eval_y=dm.test_dataset.y)
    assert rule.equivalent(dm.rules[0]), str(rule)
    assert rule.accuracy == 1.0 and rule.complexity == 4


def test_penalties() -> None:
    entropy = LogicExplainer(5, 3, entropy_weight=0.5, task="multilabel")
    torch.testing.assert_close(entropy.penalty(), 0.5 * entropy.model[0].entropy())
    mlp = MLPLogicExplainer(5, 2, l1_weight=0.1)
    torch.testing.assert_close(mlp.penalty(), 0.1 * mlp.model[0].weight.abs().sum())


def test_predictions_layouts() -> None:
    logits = torch.tensor([[0.3, -1.0], [-2.0, 0.5]])
    assert LogicExplainer(3, 2).predictions(logits).tolist() == [0, 1]
    assert LogicExplainer(3, 2, task="multilabel").predictions(logits).tolist() == [
        [True, False],
        [False, True],
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task": "binary"}, "task"),
        ({"n_classes": 1}, "n_classes"),
        ({"hidden": ()}, "hidden"),
        ({"hidden": (4, 0)}, "hidden"),
        ({"entropy_weight": -1.0}, "entropy_weight"),
        ({"lr": 0.0}, "lr"),
        ({"concept_names": ["a", "b"]}, "concept_names"),
        ({"class_names": ["a", "a"]}, "class_names"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    args = {"n_concepts": 3, "n_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        LogicExplainer(**args)
