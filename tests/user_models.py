"""Models and data as users write them, for tests that treat them as third-party code.

Nothing here uses lightning-xai: each LightningModule has its own ``training_step`` and batch
layout, as a user's would. Tests attach our callbacks around them.

* :class:`HFTextClassifier`: a HuggingFace ``BertForSequenceClassification`` built from a tiny
  config with random weights, fed dict batches ``{"input_ids", "attention_mask", "labels"}``
  and returning a ``ModelOutput``;
* :class:`RGBResNet`: a ResNet-style CNN with BatchNorm on non-square RGB images ``(x, y)``;
* :class:`TwoInputNet`: ``forward(image, features=None)`` on batches ``(image, features, y)``;
* :class:`SignalNet`: a Conv1d on time series ``(N, C, T)``;
* :class:`TabularNet`: an MLP on named tabular columns ``(N, D)``;
* :class:`UserDataModule`: a DataModule as in Lightning's docs, with its own split names.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


# ---------------------------------------------------------------------------- data
def token_data(n: int = 64, length: int = 8, vocab: int = 20, seed: int = 0) -> dict[str, Tensor]:
    """Token sequences whose label is 1 when token 3 occurs and 0 when token 4 occurs (one of
    them, exactly once, at a random place); the rest are filler tokens 5.., padded with 0."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (n,), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    pos = (torch.rand(n, generator=g) * lengths).long()
    ids[torch.arange(n), pos] = torch.where(labels == 1, 3, 4)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class DictDataset(Dataset):
    """Rows of a dict of tensors, as a tokenised HuggingFace dataset yields them."""

    def __init__(self, columns: dict[str, Tensor]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.columns.items()}


def rgb_data(n: int = 48, height: int = 12, width: int = 10, seed: int = 0) -> TensorDataset:
    """RGB images whose class (0-2) is the brightest colour channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 3, height, width, generator=g) * 0.5
    x[torch.arange(n), y] += 0.5
    return TensorDataset(x, y)


def two_input_data(n: int = 48, seed: int = 0) -> TensorDataset:
    """``(image (1, 6, 6), features (4,), y)``: the class needs both inputs."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 1, 6, 6, generator=g)
    features = torch.randn(n, 4, generator=g)
    y = ((image.mean((1, 2, 3)) > 0.5).long() + (features[:, 0] > 0).long()).clamp(max=1)
    return TensorDataset(image, features, y)


def signal_data(n: int = 48, channels: int = 2, steps: int = 24, seed: int = 0) -> TensorDataset:
    """Time series ``(C, T)`` whose class is whether a bump sits in the first half."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, steps, generator=g) * 0.1
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        start = 2 if y[i] == 1 else steps // 2 + 2
        x[i, 0, start : start + 4] += 1.0
    return TensorDataset(x, y)


TABULAR_COLUMNS = ("age", "income", "debt", "tenure", "noise")


def tabular_data(n: int = 64, seed: int = 0) -> TensorDataset:
    """Named columns :data:`TABULAR_COLUMNS`; the class is ``income - debt > 0``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(TABULAR_COLUMNS), generator=g)
    y = (x[:, 1] - x[:, 2] > 0).long()
    return TensorDataset(x, y)


class UserDataModule(pl.LightningDataModule):
    """A DataModule laid out as in Lightning's docs, naming its splits its own way."""

    def __init__(self, make: Any = rgb_data, batch_size: int = 16, **kwargs: Any) -> None:
        super().__init__()
        self.make, self.batch_size, self.kwargs = make, batch_size, kwargs

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.digits_train = self.make(seed=1, **self.kwargs)
            self.digits_val = self.make(seed=2, **self.kwargs)
        if stage in ("validate", "fit"):
            self.digits_val = self.make(seed=2, **self.kwargs)
        if stage == "test":
            self.digits_test = self.make(seed=3, **self.kwargs)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.digits_train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.digits_val, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.digits_test, batch_size=self.batch_size)


# ---------------------------------------------------------------------------- models
class _Supervised(pl.LightningModule):
    """``(x, y)`` training as users write it (cross-entropy, Adam)."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        *inputs, y = batch
        loss = F.cross_entropy(self(*inputs), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        *inputs, y = batch
        self.log("val_loss", F.cross_entropy(self(*inputs), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        *inputs, y = batch
        self.log("test_loss", F.cross_entropy(self(*inputs), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class HFTextClassifier(pl.LightningModule):
    """A tiny random-weight BERT classifier from a config; dict batches, ``ModelOutput``."""

    def __init__(self, vocab_size: int = 20, num_labels: int = 2, lr: float = 3e-3) -> None:
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            num_labels=num_labels,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        torch.manual_seed(0)
        self.bert = BertForSequenceClassification(config)
        self.lr = lr

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Any:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.bert(**batch).loss
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val_loss", self.bert(**batch).loss)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("test_loss", self.bert(**batch).loss)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + x)


class RGBResNet(_Supervised):
    """A ResNet-style CNN with BatchNorm on RGB images of any size (global average pooling)."""

    def __init__(self, num_classes: int = 3, width: int = 8, lr: float = 1e-2) -> None:
        super().__init__(lr)
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.layer1 = _Block(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.layer1(self.stem(x))).flatten(1))


class TwoInputNet(_Supervised):
    """``forward(image, features=None)``: the second input is optional, as in many user models."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__(lr)
        self.image = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU())
        self.features = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(16, 2)

    def forward(self, image: Tensor, features: Tensor | None = None) -> Tensor:
        f = self.features(features) if features is not None else image.new_zeros(len(image), 8)
        return self.head(torch.cat([self.image(image), f], dim=1))


class SignalNet(_Supervised):
    """A Conv1d classifier on ``(N, C, T)`` time series."""

    def __init__(self, channels: int = 2, lr: float = 1e-2) -> None:
        super().__init__(lr)
        self.conv = nn.Conv1d(channels, 6, 5, padding=2)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(4)
        self.fc = nn.Linear(24, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


class TabularNet(_Supervised):
    """An MLP on the named columns of :func:`tabular_data`."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__(lr)
        self.net = nn.Sequential(nn.Linear(len(TABULAR_COLUMNS), 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def loader(dataset: Dataset, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    """A plain DataLoader, as users pass to ``fit``/``test``."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)
