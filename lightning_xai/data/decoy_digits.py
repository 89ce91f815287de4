"""Decoy digits: the Decoy-MNIST construction on the bundled 8x8 digits.

Each digit is padded with a blank border wide enough for a small square patch, and the patch is
placed in a random corner. In the training and validation splits the patch's intensity encodes
the label (a shortcut a model can learn instead of the digit); in the decoy test split the
intensity is random, so a model that learned the shortcut fails there. The masks mark the
patch: they are the annotations for the right-reasons penalty.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch.nn import functional as F

from lightning_xai.data.datasets import TensorPairDataset
from lightning_xai.data.digits import DigitsDataModule, load_digits_tensors, split_indices
from lightning_xai.utilities.tensor_checks import check_finite_rows
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["DecoyDigitsDataModule", "add_decoy"]

TestSplit = Literal["decoy", "clean"]


def add_decoy(
    images: torch.Tensor,
    intensity: torch.Tensor,
    corner: torch.Tensor,
    patch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint a ``patch_size`` square of the given intensity into a corner of each image.

    Args:
        images: ``(N, C, H, W)`` images (already padded).
        intensity: ``(N,)`` patch values.
        corner: ``(N,)`` corner index: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
        patch_size: side of the square patch in pixels.

    Returns:
        The decoyed images and ``bool`` masks of the patches, both ``(N, C, H, W)``.

    Example:
        >>> x, mask = add_decoy(torch.zeros(1, 1, 4, 4), torch.tensor([0.5]), torch.tensor([3]), 2)
        >>> x[0, 0].tolist()[2:]
        [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]]
        >>> int(mask.sum())
        4
    """
    check_positive_int("patch_size", patch_size)
    h, w = images.shape[-2:]
    if patch_size > min(h, w):
        raise ValueError(
            f"`patch_size`={patch_size} does not fit in images of {h}x{w}; use a patch of at "
            f"most {min(h, w)} pixels."
        )
    intensity = torch.as_tensor(intensity)
    check_finite_rows("intensity", intensity.reshape(-1))
    corner = torch.as_tensor(corner)
    if corner.numel() and (int(corner.min()) < 0 or int(corner.max()) > 3):
        bad = int(corner.min()) if int(corner.min()) < 0 else int(corner.max())
        raise ValueError(
            f"`corner` must hold corner indices in [0, 3] (top-left, top-right, bottom-left, "
            f"bottom-right), got {bad}."
        )
    origins = [(0, 0), (0, w - patch_size), (h - patch_size, 0), (h - patch_size, w - patch_size)]
    mask = torch.zeros(images.shape, dtype=torch.bool)
    for index, (top, left) in enumerate(origins):
        mask[corner == index, :, top : top + patch_size, left : left + patch_size] = True
    value = intensity.to(images.dtype).reshape(-1, 1, 1, 1).expand_as(images)
    return torch.where(mask, value, images), mask


class DecoyDigitsDataModule(DigitsDataModule):
    """The bundled digits with a label-revealing decoy patch (Decoy-MNIST on 8x8 digits).

    Images are padded from 8x8 to ``(8 + 2 * padding)`` squared (14x14 by default); a
    ``patch_size`` square (3x3 by default) sits in a random corner of the blank border, so it
    never covers the digit. Its intensity is
    ``1 - c / 10`` for a class ``c``: in the train and validation splits ``c`` is the label, in
    the decoy test split ``c`` is drawn at random. Batches are ``(x, y, mask)`` with ``bool``
    masks that are ``True`` on the patch (the features a model must not rely on). The clean
    test split has no patch and yields ``(x, y)``.

    Args:
        batch_size: batch size of every loader.
        val_fraction: share of the digits held out for validation.
        test_fraction: share of the digits held out for testing.
        seed: seed of the split, the corners and the test intensities.
        num_workers: ``DataLoader`` workers.
        padding: blank pixels added on each side.
        patch_size: side of the decoy square, at most ``padding``.
        decoy: ``False`` gives the same padded digits without any patch (every split yields
            ``(x, y)``): the control a decoy-free model is trained on.
        test_split: what ``test_dataloader`` serves: ``"decoy"`` (random-intensity patches)
            or ``"clean"`` (no patch); may be changed between test runs. Both are available as
            ``decoy_test_dataset`` and ``clean_test_dataset``.

    Example:
        >>> dm = DecoyDigitsDataModule(batch_size=16)
        >>> dm.setup("fit")
        >>> x, y, mask = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), mask.dtype, int(mask[0].sum())
        ((16, 1, 14, 14), torch.bool, 9)
        >>> bool((x[mask].reshape(16, 9) == (1 - y[:, None] / 10)).all())  # intensity = label
        True
    """

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        padding: int = 3,
        patch_size: int = 3,
        decoy: bool = True,
        test_split: TestSplit = "decoy",
    ) -> None:
        check_positive_int("padding", padding)
        if not isinstance(patch_size, int) or not 1 <= patch_size <= padding:
            raise ValueError(
                f"`patch_size` must be an integer in [1, padding={padding}] so the patch fits in "
                f"the blank border, got {patch_size!r}; increase `padding` or shrink the patch."
            )
        if test_split not in get_args(TestSplit):
            raise ValueError(
                f"`test_split` must be one of {list(get_args(TestSplit))}, got {test_split!r}."
            )
        super().__init__(batch_size, val_fraction, test_fraction, seed, num_workers)
        self.remove_ignored_hparams(["flip_fraction"])  # not an argument of this class
        self.padding = padding
        self.patch_size = patch_size
        self.decoy = decoy
        self.test_split = test_split
        self.decoy_test_dataset: TensorPairDataset | None = None
        self.clean_test_dataset: TensorPairDataset | None = None

    @property
    def image_size(self) -> int:
        """Side of the padded images."""
        return 8 + 2 * self.padding

    def _split(
        self, x: torch.Tensor, y: torch.Tensor, offset: int, random_intensity: bool
    ) -> TensorPairDataset:
        if not self.decoy:
            return TensorPairDataset(x, y)
        g = torch.Generator().manual_seed(self.seed * 1000 + offset)
        corner = torch.randint(0, 4, (len(x),), generator=g)
        cls = torch.randint(0, self.num_classes, (len(x),), generator=g) if random_intensity else y
        decoyed, mask = add_decoy(x, 1.0 - cls.float() / self.num_classes, corner, self.patch_size)
        return TensorPairDataset(decoyed, y, mask)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self._build()
        # chosen on every call, so `test_split` may be changed between `trainer.test` calls
        self.test_dataset = (
            self.clean_test_dataset if self.test_split == "clean" else self.decoy_test_dataset
        )

    def _build(self) -> None:
        x, y = load_digits_tensors()
        x = F.pad(x, (self.padding,) * 4)
        train, val, test = split_indices(len(x), self.val_fraction, self.test_fraction, self.seed)
        self.train_dataset = self._split(x[train], y[train], 1, random_intensity=False)
        self.val_dataset = self._split(x[val], y[val], 2, random_intensity=False)
        self.decoy_test_dataset = self._split(x[test], y[test], 3, random_intensity=True)
        self.clean_test_dataset = TensorPairDataset(x[test], y[test])
