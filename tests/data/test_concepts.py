"""Boolean-concept datamodules: targets follow the true rules, splits and noise are seeded."""

from __future__ import annotations

import pytest
import torch

from lightning_xai.data import DNFDataModule, TrigonometryDataModule, XORDataModule


def test_xor_targets_and_noise_concepts() -> None:
    dm = XORDataModule(n_samples=400, n_noise_concepts=5, batch_size=16)
    dm.setup()
    assert dm.n_concepts == 7 and dm.n_classes == 2 and dm.task == "multiclass"
    for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        c, y = dataset.x, dataset.y
        assert y.dtype == torch.int64
        assert torch.equal(y, (c[:, 0] != c[:, 1]).long())
        assert torch.equal(dm.rules[1].evaluate(c), y == 1)
        assert torch.equal(dm.rules[0].evaluate(c), y == 0)
    assert set(torch.unique(dm.train_dataset.x).tolist()) == {0.0, 1.0}
    assert sum(len(d) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)) == 400
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 7)


def test_generation_is_seeded() -> None:
    first, second, other = (XORDataModule(n_samples=50, seed=s) for s in (3, 3, 4))
    for dm in (first, second, other):
        dm.setup()
    assert torch.equal(first.train_dataset.x, second.train_dataset.x)
    assert not torch.equal(first.train_dataset.x, other.train_dataset.x)


def test_label_noise_only_touches_training_labels() -> None:
    dm = XORDataModule(n_samples=1000, label_noise=0.2)
    dm.setup()
    train = dm.train_dataset
    assert torch.equal(train.y != train.clean_y, train.flipped)
    assert int(train.flipped.sum()) == round(0.2 * len(train))
    for dataset in (dm.val_dataset, dm.test_dataset):
        assert torch.equal(dataset.y, (dataset.x[:, 0] != dataset.x[:, 1]).long())


def test_dnf_with_explicit_rules() -> None:
    rules = ["(c0 & c1) | (c2 & ~c3)", "(c4 & ~c5 & c6) | c7", "(c8 & c9) | (~c10 & c11 & c12)"]
    dm = DNFDataModule(n_concepts=20, rules=rules, n_samples=500, label_noise=0.1)
    dm.setup()
    assert dm.task == "multilabel" and dm.n_classes == 3 and dm.n_concepts == 20
    c, y = dm.test_dataset.x, dm.test_dataset.y
    assert y.shape == (len(c), 3) and y.dtype == torch.float32
    expected = torch.stack(
        [
            (c[:, 0].bool() & c[:, 1].bool()) | (c[:, 2].bool() & ~c[:, 3].bool()),
            (c[:, 4].bool() & ~c[:, 5].bool() & c[:, 6].bool()) | c[:, 7].bool(),
            (c[:, 8].bool() & c[:, 9].bool())
            | (~c[:, 10].bool() & c[:, 11].bool() & c[:, 12].bool()),
        ],
        dim=1,
    )
    assert torch.equal(y.bool(), expected)
    train = dm.train_dataset
    assert train.flipped.shape == train.y.shape
    assert torch.equal(train.y != train.clean_y, train.flipped)
    assert 0.05 < float(train.flipped.float().mean()) < 0.15


def test_random_dnf_rules_avoid_noise_concepts_and_are_seeded() -> None:
    dm = DNFDataModule(n_concepts=10, n_classes=4, n_noise_concepts=4, n_samples=100, seed=7)
    again = DNFDataModule(n_concepts=10, n_classes=4, n_noise_concepts=4, n_samples=100, seed=7)
    assert [str(r) for r in dm.rules] == [str(r) for r in again.rules]
    used = {s.name for rule in dm.rules for s in rule.expr.free_symbols}
    assert used and used <= {f"c{j}" for j in range(6)}
    dm.setup()
    for k, rule in enumerate(dm.rules):
        assert torch.equal(rule.evaluate(dm.train_dataset.x), dm.train_dataset.y[:, k].bool())


def test_trigonometry_rule_is_the_per_cell_majority() -> None:
    dm = TrigonometryDataModule(n_samples=4000)
    dm.setup()
    concepts, y, features = dm.train_dataset.tensors
    assert features.shape == (len(concepts), 7) and concepts.shape[1] == 3
    cells = (concepts * torch.tensor([1.0, 2.0, 4.0])).sum(dim=1).long()
    predicted = dm.rules[1].evaluate(concepts)
    for cell in range(8):
        rows = cells == cell
        majority = float(y[rows].float().mean()) > 0.5
        assert bool(predicted[rows].all()) == majority and bool(predicted[rows].any()) == majority
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 3


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (XORDataModule, {"n_samples": 5}, "n_samples"),
        (XORDataModule, {"label_noise": 0.7}, "label_noise"),
        (XORDataModule, {"n_noise_concepts": -1}, "n_noise_concepts"),
        (DNFDataModule, {"n_noise_concepts": 20}, "n_noise_concepts"),
        (DNFDataModule, {"rules": "c0 & c1"}, "rules"),
        (DNFDataModule, {"rules": ["c0 & c99"]}, "unknown concepts"),
        (TrigonometryDataModule, {"val_fraction": 0.9, "test_fraction": 0.2}, "fraction"),
    ],
)
def test_invalid_arguments(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)
