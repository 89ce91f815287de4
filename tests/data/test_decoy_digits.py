"""Decoy digits: the patch, its label encoding, the masks and the clean split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_xai.data import DecoyDigitsDataModule, DigitsDataModule


@pytest.fixture(scope="module")
def decoy() -> DecoyDigitsDataModule:
    dm = DecoyDigitsDataModule(batch_size=50, seed=3)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def plain() -> DigitsDataModule:
    dm = DigitsDataModule(seed=3)
    dm.setup()
    return dm


def _corner_of(mask: torch.Tensor, size: int) -> torch.Tensor:
    rows = mask[:, 0].any(dim=2).float().argmax(dim=1)  # first masked row
    cols = mask[:, 0].any(dim=1).float().argmax(dim=1)
    return (rows > size // 2).long() * 2 + (cols > size // 2).long()


def test_digits_are_padded_and_untouched_outside_the_patch(decoy, plain) -> None:
    pad = decoy.padding
    for split in ("train", "val"):
        ds, ref = getattr(decoy, f"{split}_dataset"), getattr(plain, f"{split}_dataset")
        assert ds.x.shape[1:] == (1, 8 + 2 * pad, 8 + 2 * pad)
        assert torch.equal(ds.y, ref.y)
        padded = F.pad(ref.x, (pad,) * 4)
        mask = ds.extra[0]
        assert torch.equal(ds.x[~mask], padded[~mask])  # only the patch differs
        assert not mask[:, :, pad:-pad, pad:-pad].any()  # the patch never covers the digit


def test_masks_are_square_corner_patches(decoy) -> None:
    x, y, mask = next(iter(decoy.train_dataloader()))
    assert mask.dtype == torch.bool and mask.shape == x.shape
    assert (mask.flatten(1).sum(1) == decoy.patch_size**2).all()
    corners = _corner_of(decoy.train_dataset.extra[0], decoy.image_size)
    assert set(corners.tolist()) == {0, 1, 2, 3}


def test_train_intensity_encodes_the_label_and_test_intensity_does_not(decoy) -> None:
    train = decoy.train_dataset
    values = train.x[train.extra[0]].reshape(len(train), -1)
    assert torch.equal(values, (1 - train.y.float() / 10)[:, None].expand_as(values))
    test = decoy.decoy_test_dataset
    values = test.x[test.extra[0]].reshape(len(test), -1)[:, 0]
    agrees = (values == 1 - test.y.float() / 10).float().mean().item()
    assert agrees < 0.25  # chance is 0.1
    assert len(values.unique()) == 10


def test_test_splits(decoy, plain) -> None:
    assert decoy.test_dataset is decoy.decoy_test_dataset
    assert len(next(iter(decoy.test_dataloader()))) == 3
    clean = DecoyDigitsDataModule(seed=3, test_split="clean")
    clean.setup()
    x, y = next(iter(clean.test_dataloader()))
    padded = F.pad(plain.test_dataset.x, (3,) * 4)
    assert torch.equal(clean.clean_test_dataset.x, padded)
    assert torch.equal(clean.decoy_test_dataset.y, clean.clean_test_dataset.y)
    clean.test_split = "decoy"  # switching after setup takes effect at the next setup
    clean.setup("test")
    assert len(next(iter(clean.test_dataloader()))) == 3


def test_without_decoy_every_split_is_clean(plain) -> None:
    dm = DecoyDigitsDataModule(seed=3, decoy=False)
    dm.setup()
    for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        assert len(ds[0]) == 2
    assert torch.equal(dm.train_dataset.x, F.pad(plain.train_dataset.x, (3,) * 4))


def test_seeded_and_reproducible() -> None:
    a, b, c = (DecoyDigitsDataModule(seed=s) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.train_dataset.x, b.train_dataset.x)
    assert torch.equal(a.decoy_test_dataset.x, b.decoy_test_dataset.x)
    assert not torch.equal(a.train_dataset.y, c.train_dataset.y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"padding": 0}, "`padding`"),
        ({"padding": 2, "patch_size": 3}, r"`patch_size`.*padding=2"),
        ({"test_split": "both"}, "`test_split`.*'both'"),
        ({"batch_size": 0}, "`batch_size`"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DecoyDigitsDataModule(**kwargs)


def test_hyperparameters_rebuild_the_datamodule() -> None:
    dm = DecoyDigitsDataModule(patch_size=2, test_split="clean")
    again = DecoyDigitsDataModule(**dm.hparams)
    assert again.patch_size == 2 and again.test_split == "clean"
