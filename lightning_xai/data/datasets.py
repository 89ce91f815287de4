"""Indexable in-memory datasets whose positions stay stable across runs."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["SplitLoaders", "TensorPairDataset"]


class SplitLoaders:
    """The dataloaders of a datamodule that holds its splits as ``train_dataset``,
    ``val_dataset`` and ``test_dataset`` (built by ``setup``; ``batch_size`` and
    ``num_workers`` attributes). Every loader sets the data up first, so it can be asked for
    before the trainer calls ``setup``; ``predict`` serves the test split. Mixed into the
    LightningDataModules of :mod:`lightning_xai.data`; a datamodule overrides
    :meth:`served_test_dataset` to serve another test set."""

    batch_size: int
    num_workers: int

    def _loader(self, dataset: Any, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def served_test_dataset(self) -> Any:
        """The dataset ``test_dataloader`` serves (after ``setup``)."""
        return self.test_dataset

    def train_dataloader(self) -> DataLoader:
        self.setup()  # type: ignore[attr-defined]
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()  # type: ignore[attr-defined]
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()  # type: ignore[attr-defined]
        return self._loader(self.served_test_dataset(), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class TensorPairDataset(Dataset):
    """``(x, y, *extra)`` tensors indexed together; ``dataset[i]`` returns a tuple.

    Positions never change, so an index recorded by a callback (a probe sample, an influential
    training example) always names the same example.

    Example:
        >>> ds = TensorPairDataset(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
        >>> len(ds), ds[1][1].item()
        (3, 1)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *extra: torch.Tensor) -> None:
        for name, t in [("y", y)] + [(f"extra[{i}]", e) for i, e in enumerate(extra)]:
            if len(t) != len(x):
                raise ValueError(
                    f"`{name}` has {len(t)} rows but `x` has {len(x)}; every tensor of a "
                    "TensorPairDataset needs the same first dimension."
                )
        self.x = x
        self.y = y
        self.extra = tuple(extra)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return (self.x[index], self.y[index], *(e[index] for e in self.extra))

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """All tensors, in the order ``__getitem__`` returns them."""
        return (self.x, self.y, *self.extra)
