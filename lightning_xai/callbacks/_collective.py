"""Decisions every rank agrees on before a collective: one rank that cannot proceed makes every
rank stop with the same error, instead of leaving the others waiting in the collective."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["agree", "gather_objects", "is_distributed"]


def is_distributed(trainer: pl.Trainer) -> bool:
    """Whether ``trainer`` runs several processes joined by an initialised process group."""
    return (
        trainer.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )


def gather_objects(trainer: pl.Trainer, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in one process.

    Every rank must call it (it is a collective).
    """
    if not is_distributed(trainer):
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def agree(
    trainer: pl.Trainer, error: str | None, error_type: type[Exception], context: str = ""
) -> None:
    """Raise ``error_type`` on every rank when any rank has an ``error`` message.

    Every rank must call it. The raised message is the same on every rank: each failing rank's
    message, prefixed with its rank when there are several processes.

    Example:
        >>> import pytorch_lightning as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False)
        >>> agree(trainer, None, ValueError)  # nothing to report: no error
        >>> agree(trainer, "the store is empty", ValueError)
        Traceback (most recent call last):
        ...
        ValueError: the store is empty
    """
    messages = gather_objects(trainer, error)
    failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    if not failed:
        return
    if len(messages) == 1:
        raise error_type(failed[0][1])
    unique = {m for _, m in failed}
    if len(unique) == 1:
        ranks = ", ".join(str(r) for r, _ in failed)
        which = "rank" if len(failed) == 1 else "ranks"
        text = f"{context}{which} {ranks} of {len(messages)}: {failed[0][1]}"
    else:
        text = context + " | ".join(f"rank {r} of {len(messages)}: {m}" for r, m in failed)
    raise error_type(text + " (every rank stops with this error.)")
