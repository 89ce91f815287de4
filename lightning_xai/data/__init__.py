"""LightningDataModules on bundled or generated data."""

from lightning_xai.data.datasets import TensorPairDataset
from lightning_xai.data.digits import DigitsDataModule

__all__ = [
    "DigitsDataModule",
    "TensorPairDataset",
]
