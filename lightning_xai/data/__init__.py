"""LightningDataModules on bundled or generated data."""

from lightning_xai.data.concepts import (
    DNFDataModule,
    TrigonometryDataModule,
    XORDataModule,
    random_dnf,
)
from lightning_xai.data.datasets import TensorPairDataset
from lightning_xai.data.decoy_digits import DecoyDigitsDataModule
from lightning_xai.data.digits import DigitsDataModule

__all__ = [
    "DNFDataModule",
    "DecoyDigitsDataModule",
    "DigitsDataModule",
    "TensorPairDataset",
    "TrigonometryDataModule",
    "XORDataModule",
    "random_dnf",
]
