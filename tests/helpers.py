"""Small, fast models, data and trainers shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn

from lightning_xai.data import DigitsDataModule
from lightning_xai.modules import Classifier


class TinyCNN(nn.Module):
    """A very small CNN for (1, 8, 8) inputs; every ReLU is its own module."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * 16, 16), nn.ReLU(), nn.Linear(16, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TinyClassifier(Classifier):
    """:class:`~lightning_xai.modules.Classifier` over :class:`TinyCNN`."""

    def __init__(self, num_classes: int = 10, lr: float = 1e-2) -> None:
        super().__init__(model=TinyCNN(num_classes), num_classes=num_classes, lr=lr)


def tiny_digits(**kwargs: Any) -> DigitsDataModule:
    """The digits datamodule with small batches (override any argument)."""
    kwargs.setdefault("batch_size", 32)
    return DigitsDataModule(**kwargs)


class ReleaseProcessGroup(pl.Callback):
    """Destroy the gloo process group when a DDP run's trainer tears down.

    Lightning destroys the default process group at exit only for NCCL
    (``lightning_fabric.utilities.distributed._init_dist_connection``); a spawned gloo worker
    that exits with its group alive can be killed by SIGABRT ("terminate called without an
    active exception") while the interpreter tears the group's threads down. Users' scripts
    exit the same way; the tests release the group as a well-behaved program should.
    """

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def make_trainer(tmp_path: str | Path, **kwargs: Any) -> pl.Trainer:
    """A quick CPU trainer logging to TensorBoard under ``tmp_path``."""
    defaults: dict[str, Any] = dict(
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=2,
        limit_test_batches=2,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(str(tmp_path), name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    defaults.update(kwargs)
    if "ddp" in str(defaults.get("strategy", "")):
        defaults["callbacks"] = [*(defaults.get("callbacks") or []), ReleaseProcessGroup()]
    return pl.Trainer(**defaults)
