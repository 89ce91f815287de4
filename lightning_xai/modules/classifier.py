"""A plain classifier LightningModule that wraps any backbone returning logits."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_xai.modules._adapter import (
    AdapterLike,
    attach_adapter,
    labelled_batch,
    unlabelled_scores,
)
from lightning_xai.nn.models import DigitsCNN
from lightning_xai.utilities.validation import check_finite

__all__ = ["Classifier"]

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class _BoundForward:
    """``module.forward``: calls ``module.model`` and reports the backbone's signature."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._module.model(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        backbone = self._module.model
        return inspect.signature(backbone.forward if isinstance(backbone, nn.Module) else backbone)


class _BackboneForward:
    """A ``forward`` that calls the backbone and has its signature (``forward(input_ids,
    attention_mask=None)`` for a text backbone), so inspecting the module's forward (as a
    :class:`~lightning_xai.utilities.BatchAdapter` does) sees the backbone's arguments."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else _BoundForward(instance)


class Classifier(pl.LightningModule):
    """Cross-entropy classification over any backbone that returns logits.

    ``forward`` is the backbone alone, so attribution methods explain exactly what is trained.
    Logs ``{train,val,test}/loss`` and ``{train,val,test}/acc``. Every batch is checked before
    the loss sees it: an empty batch, NaN or inf inputs and labels outside ``[0, num_classes)``
    raise a ``ValueError`` naming the row (so does ``predict_step`` for bad inputs).

    Args:
        model: the backbone; defaults to :class:`~lightning_xai.nn.DigitsCNN`.
        num_classes: number of classes.
        lr: learning rate.
        weight_decay: weight decay, applied by the optimizer.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        adapter: how to read batches: a :class:`~lightning_xai.utilities.BatchAdapter`, a
            mapping of its arguments, or ``None`` to infer it (``(x, y, ...)``, dicts with
            ``labels``). Saved with the hyperparameters as that mapping.

    Example:
        >>> module = Classifier(num_classes=10)
        >>> module(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        num_classes: int = 10,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        adapter: AdapterLike = None,
    ) -> None:
        super().__init__()
        if optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"`optimizer` must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}."
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
        check_finite("lr", lr, minimum=0.0, exclusive=True)
        check_finite("weight_decay", weight_decay, minimum=0.0)
        self.save_hyperparameters(ignore=["model", "adapter"])
        self.adapter = attach_adapter(self, adapter)
        self._labels_checked = False
        self.model = model if model is not None else DigitsCNN(num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{s}_acc": MulticlassAccuracy(num_classes, average="micro")
                for s in ("train", "val", "test")
            }
        )

    forward = _BackboneForward()  # type: ignore[assignment]

    def _shared_step(self, batch: Any, stage: str) -> torch.Tensor:
        logits, y = labelled_batch(self, batch)
        loss = F.cross_entropy(logits, y)
        acc = self.metrics[f"{stage}_acc"]
        acc(logits.detach(), y)
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=sync)
        self.log(f"{stage}/acc", acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return unlabelled_scores(self, batch).argmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return _OPTIMIZERS[hp.optimizer](self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
