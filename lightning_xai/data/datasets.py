"""Indexable in-memory datasets whose positions stay stable across runs."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["TensorPairDataset"]


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
