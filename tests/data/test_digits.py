"""DigitsDataModule: shapes, ranges, a seeded stable split, label flipping, clear errors."""

from __future__ import annotations

import pytest
import torch

from lightning_xai.data import DigitsDataModule, TensorPairDataset


def _setup(**kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_shapes_ranges_and_batches() -> None:
    dm = _setup(batch_size=16)
    sizes = [len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == round(1797 * 0.2)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(dm.train_dataset.x.min()) and float(dm.train_dataset.x.max()) == 1.0
    assert set(dm.test_dataset.y.tolist()) == set(range(10))


def test_split_is_fixed_by_seed_and_disjoint() -> None:
    a, b, c = _setup(seed=1), _setup(seed=1), _setup(seed=2)
    assert torch.equal(a.val_dataset.x, b.val_dataset.x)
    assert not torch.equal(a.val_dataset.x, c.val_dataset.x)
    flat = lambda ds: {tuple(row.flatten().tolist()) + (int(lbl),) for row, lbl in zip(ds.x, ds.y)}  # noqa: E731
    assert not flat(a.train_dataset) & flat(a.test_dataset) - flat(
        a.val_dataset
    )  # no leak across splits
    # Indexing is stable: position i is always the same example.
    assert torch.equal(a.val_dataset[7][0], b.val_dataset[7][0])
    # Validation loader is not shuffled.
    x, _ = next(iter(a.val_dataloader()))
    assert torch.equal(x, a.val_dataset.x[: len(x)])


def test_flip_fraction_records_flipped_labels() -> None:
    dm = _setup(flip_fraction=0.1, seed=0)
    ds = dm.train_dataset
    assert int(ds.flipped.sum()) == round(len(ds) * 0.1)
    assert bool((ds.y[ds.flipped] != ds.clean_y[ds.flipped]).all())
    assert torch.equal(ds.y[~ds.flipped], ds.clean_y[~ds.flipped])
    assert torch.equal(_setup(seed=0).train_dataset.y, ds.clean_y)  # same split, clean labels


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(val_fraction=1.5), "val_fraction"),
        (dict(val_fraction=0.6, test_fraction=0.5), "val_fraction` \\+ `test_fraction"),
        (dict(flip_fraction=-0.1), "flip_fraction"),
    ],
)
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


def test_tensor_pair_dataset_checks_lengths() -> None:
    with pytest.raises(ValueError, match="`y` has 2 rows but `x` has 3"):
        TensorPairDataset(torch.zeros(3, 1), torch.zeros(2))
    ds = TensorPairDataset(torch.zeros(3, 1), torch.zeros(3), torch.ones(3, 2))
    assert len(ds[0]) == 3 and len(ds.tensors) == 3
