"""scikit-learn's bundled 8x8 handwritten digits as a LightningDataModule."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from lightning_xai.data.datasets import SplitLoaders, TensorPairDataset
from lightning_xai.utilities.tensor_checks import check_class_indices
from lightning_xai.utilities.validation import check_finite, check_positive_int

__all__ = ["DigitsDataModule", "flip_labels", "load_digits_tensors", "split_indices"]


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as ``(N, 1, 8, 8)`` float tensors in [0, 1] and ``int64`` labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return x, y


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[torch.Tensor, ...]:
    """A seeded permutation of ``range(n)`` cut into train/val/test index tensors.

    Example:
        >>> [len(s) for s in split_indices(10, 0.2, 0.3, seed=0)]
        [5, 2, 3]
    """
    check_positive_int("n", n)
    check_seed(seed)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        check_finite(name, value, minimum=0.0)
        if not value < 1.0:
            raise ValueError(f"`{name}` must be a share in [0, 1), got {value!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"`val_fraction` + `test_fraction` must be < 1, got {val_fraction} + {test_fraction}; "
            "leave some data for training."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]


def flip_labels(
    y: torch.Tensor, fraction: float, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip ``fraction`` of ``y`` to a different, uniformly chosen class.

    Returns the noisy labels and a boolean mask of the flipped positions.

    Example:
        >>> y = torch.zeros(10, dtype=torch.long)
        >>> noisy, flipped = flip_labels(y, 0.3, num_classes=10, seed=0)
        >>> int(flipped.sum()), bool((noisy[flipped] != 0).all())
        (3, True)
    """
    check_fraction("flip_fraction", fraction)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2 (a label flips to another class), got "
            f"{num_classes!r}."
        )
    check_class_indices("y", y, num_classes)
    g = torch.Generator().manual_seed(seed + 1)
    n_flip = round(len(y) * fraction)
    flipped = torch.zeros(len(y), dtype=torch.bool)
    flipped[torch.randperm(len(y), generator=g)[:n_flip]] = True
    offset = torch.randint(1, num_classes, (len(y),), generator=g)
    noisy = torch.where(flipped, (y + offset) % num_classes, y)
    return noisy, flipped


def check_fraction(name: str, value: object, high: float = 1.0) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite share in [0, ``high``].

    Example:
        >>> check_fraction("flip_fraction", float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: `flip_fraction` must be a finite number >= 0.0, got nan.
    """
    check_finite(name, value, minimum=0.0)
    if not value <= high:  # type: ignore[operator]
        raise ValueError(f"`{name}` must be a share in [0, {high:g}], got {value!r}.")


def check_seed(seed: object) -> None:
    """Raise ``TypeError`` unless ``seed`` is an integer (not a bool)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an integer, got {seed!r}.")


def check_num_workers(num_workers: object) -> None:
    """Raise ``ValueError`` unless ``num_workers`` is an integer >= 0."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(
            f"`num_workers` must be an integer >= 0 (0 loads in the main process), got "
            f"{num_workers!r}."
        )


class DigitsDataModule(SplitLoaders, pl.LightningDataModule):
    """The bundled 8x8 digits (1797 images, 10 classes) as ``(1, 8, 8)`` tensors in [0, 1].

    The train/val/test split is a seeded permutation, so the same ``seed`` gives the same
    split on every machine. Batches are ``(x, y)``. The datasets are
    :class:`~lightning_xai.data.TensorPairDataset` s, so an example keeps its position.

    Args:
        batch_size: batch size of every loader.
        val_fraction: share of the data held out for validation.
        test_fraction: share of the data held out for testing.
        seed: seed of the split (and of label flipping).
        num_workers: ``DataLoader`` workers.
        flip_fraction: share of *training* labels flipped to another class, to measure
            mislabel detection. ``train_dataset.flipped`` marks them and
            ``train_dataset.clean_y`` keeps the true labels.

    Example:
        >>> dm = DigitsDataModule(batch_size=32)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), x.dtype, float(x.max()) <= 1.0
        ((32, 1, 8, 8), torch.float32, True)
    """

    num_classes = 10

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        flip_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int("batch_size", batch_size)
        check_num_workers(num_workers)
        check_fraction("flip_fraction", flip_fraction)
        split_indices(10, val_fraction, test_fraction, seed)  # validate the fractions early
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.flip_fraction = flip_fraction
        self.train_dataset: TensorPairDataset | None = None
        self.val_dataset: TensorPairDataset | None = None
        self.test_dataset: TensorPairDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        x, y = load_digits_tensors()
        train, val, test = split_indices(len(x), self.val_fraction, self.test_fraction, self.seed)
        clean = y[train]
        noisy, flipped = flip_labels(clean, self.flip_fraction, self.num_classes, self.seed)
        self.train_dataset = TensorPairDataset(x[train], noisy)
        self.train_dataset.flipped = flipped
        self.train_dataset.clean_y = clean
        self.val_dataset = TensorPairDataset(x[val], y[val])
        self.test_dataset = TensorPairDataset(x[test], y[test])
