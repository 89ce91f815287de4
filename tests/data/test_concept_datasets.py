"""Concept datamodules: annotations, known rules, noise, tabular concepts."""

from __future__ import annotations

import pytest
import torch

from lightning_xai.data import ConceptDigitsDataModule, ConceptTabularDataModule
from lightning_xai.data.concept_digits import DIGIT_SHAPES
from lightning_xai.data.digits import split_indices


@pytest.mark.parametrize("task", ["digit", "parity", "prime", "geq5"])
@pytest.mark.parametrize("concept_set", ["all", "shapes", "identity"])
def test_known_rules_decide_the_labels(task: str, concept_set: str) -> None:
    dm = ConceptDigitsDataModule(task=task, concept_set=concept_set)
    dm.setup()
    x, c, y = dm.test_dataset.tensors
    for rule in dm.rules:
        assert torch.equal(rule.evaluate(c), y == rule.class_index), (task, str(rule))


def test_annotations_are_class_level_and_noise_only_on_training() -> None:
    clean = ConceptDigitsDataModule(seed=1)
    clean.setup()
    _, c, y = clean.val_dataset.tensors
    loop = clean.concept_names.index("closed_loop")
    digit = c[:, clean.concept_names.index("digit_0") :].argmax(1)
    assert torch.equal(
        c[:, loop].bool(), torch.isin(digit, torch.tensor(DIGIT_SHAPES["closed_loop"]))
    )
    assert torch.equal(digit, y)
    noisy = ConceptDigitsDataModule(seed=1, concept_noise=0.1)
    noisy.setup()
    train = noisy.train_dataset
    assert 0.08 < train.flipped.float().mean() < 0.12
    assert torch.equal(
        train.y, torch.where(train.flipped, 1 - train.clean_concepts, train.clean_concepts)
    )
    assert torch.equal(noisy.val_dataset.y, clean.val_dataset.y)
    with pytest.raises(ValueError, match="concept_noise"):
        ConceptDigitsDataModule(concept_noise=0.7)
    with pytest.raises(ValueError, match="task"):
        ConceptDigitsDataModule(task="odd")


def test_tabular_concepts_threshold_training_medians() -> None:
    from sklearn.datasets import load_breast_cancer

    dm = ConceptTabularDataModule(batch_size=8)
    dm.setup()
    x, c, y = dm.train_dataset.tensors
    assert x.shape[1] == 30 and c.shape[1] == dm.n_concepts == 10
    assert x.mean(0).abs().max() < 1e-4  # standardised with training statistics
    raw = torch.tensor(load_breast_cancer().data, dtype=torch.float32)
    train, _, test = split_indices(len(raw), 0.2, 0.2, seed=0)
    medians = raw[train][:, :10].median(dim=0).values
    assert torch.equal(dm.test_dataset.tensors[1], (raw[test][:, :10] > medians).float())
    assert set(c.unique().tolist()) <= {0.0, 1.0} and 0.3 < c.mean() < 0.7
