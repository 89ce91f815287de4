"""Train one small model per subset of the training set through Lightning: the retrainings
that :func:`~lightning_xai.influence.linear_datamodeling_score` compares an attribution with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from lightning_xai.influence.lds import correct_class_margins
from lightning_xai.utilities.batches import BatchAdapter
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["train_subset_models"]


def train_subset_models(
    make_module: Callable[[], Any],
    train_data: Any,
    target_data: Any,
    subsets: Tensor,
    max_epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    adapter: BatchAdapter | None = None,
    margin_fn: Callable[[Tensor, Tensor], Tensor] = correct_class_margins,
    trainer_kwargs: dict[str, Any] | None = None,
) -> Tensor:
    """Train one model per subset through Lightning and return the targets' margins.

    Each subset gets a fresh ``make_module()`` (a ``LightningModule``, seeded with ``seed +
    s``) fitted by a small ``Trainer`` (CPU by default, no logger, checkpoints, progress bar or
    model summary) on its examples of ``train_data``; the margins of ``target_data`` (one
    batch, read with ``adapter``) are then computed in eval mode.

    Args:
        make_module: returns a new, untrained ``LightningModule``.
        train_data: the training ``Dataset`` (indexed by the subsets).
        target_data: the target examples as one batch (e.g. ``(x, y)``).
        subsets: ``(S, N)`` boolean masks (see :func:`random_subsets`).
        max_epochs, batch_size: training of each subset model.
        seed: base seed.
        adapter: how to read batches and outputs; default ``BatchAdapter()``.
        margin_fn: ``margin_fn(scores, labels) -> (M,)``; default the correct-class margin.
        trainer_kwargs: further ``Trainer`` arguments.

    Returns:
        ``(S, M)`` margins, for :func:`linear_datamodeling_score`.
    """
    check_positive_int("max_epochs", max_epochs)
    subsets = torch.as_tensor(subsets, dtype=torch.bool)
    adapter = adapter if adapter is not None else BatchAdapter()
    rows = []
    for s, mask in enumerate(subsets):
        pl.seed_everything(seed + s, verbose=False)
        module = make_module()
        options: dict[str, Any] = dict(
            max_epochs=max_epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        options.update(trainer_kwargs or {})
        trainer = pl.Trainer(**options)
        index = torch.nonzero(mask).flatten().tolist()
        loader = DataLoader(Subset(train_data, index), batch_size=batch_size, shuffle=True)
        trainer.fit(module, loader)
        with eval_mode(module), torch.no_grad():
            adapted = adapter.split(target_data, module)
            scores = adapted.call(module)
            if adapted.labels is None:
                raise ValueError(
                    "`target_data` has no labels for the margins; point `adapter=` at them."
                )
            rows.append(margin_fn(scores, adapted.labels).detach().cpu().float())
    return torch.stack(rows)
