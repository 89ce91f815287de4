"""A crash-safe store of training checkpoints for TracIn.

Each checkpoint is a ``.pt`` file holding the tracked parameters, the buffers and the learning
rate(s) in use when it was taken; ``manifest.json`` lists the checkpoints that are complete.
Both are written atomically (temporary file + rename) and the manifest is written last, so a
crash mid-write leaves at most an orphan file that no reader trusts. Files are read back with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lightning_xai.utilities.io import atomic_save, atomic_write

__all__ = ["Checkpoint", "CheckpointEntry", "CheckpointStore", "learning_rates"]

MANIFEST = "manifest.json"
_FORMAT = "lightning-xai/tracin-checkpoints/1"


@dataclass(frozen=True)
class Checkpoint:
    """Parameters at one moment of training and the learning rate that moment used.

    Attributes:
        params: parameter tensors by name (``model.named_parameters()`` names).
        lr: the learning rate :math:`\\eta_c`; a dict gives one rate per parameter name.
        buffers: buffer tensors by name (e.g. batch-norm statistics); may be empty.
        epoch: epoch at which it was taken (``-1`` when unknown).
        step: global step at which it was taken (``-1`` when unknown).
    """

    params: dict[str, Tensor]
    lr: float | dict[str, float]
    buffers: dict[str, Tensor] = field(default_factory=dict)
    epoch: int = -1
    step: int = -1

    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        lr: float | Mapping[str, float],
        names: Iterable[str] | None = None,
        *,
        epoch: int = -1,
        step: int = -1,
    ) -> Checkpoint:
        """Snapshot (detached CPU copies of) ``module``'s parameters ``names`` and all buffers.

        Example:
            >>> from torch import nn
            >>> ckpt = Checkpoint.from_module(nn.Linear(2, 1), lr=0.1, names=["weight"])
            >>> sorted(ckpt.params), ckpt.lr
            (['weight'], 0.1)
        """
        keep = None if names is None else set(names)
        params = {
            n: p.detach().cpu().clone()
            for n, p in module.named_parameters()
            if keep is None or n in keep
        }
        buffers = {n: b.detach().cpu().clone() for n, b in module.named_buffers()}
        rate = dict(lr) if isinstance(lr, Mapping) else float(lr)
        return cls(params=params, lr=rate, buffers=buffers, epoch=int(epoch), step=int(step))

    def lr_of(self, name: str) -> float:
        """The learning rate of parameter ``name``."""
        if isinstance(self.lr, dict):
            if name not in self.lr:
                raise KeyError(f"checkpoint has no learning rate for parameter {name!r}")
            return float(self.lr[name])
        return float(self.lr)


@dataclass(frozen=True)
class CheckpointEntry:
    """A manifest row: the file (relative to the store) and what it holds."""

    file: str
    epoch: int
    step: int
    lr: float | dict[str, float]
    params: tuple[str, ...]


def learning_rates(
    module: nn.Module, optimizers: Iterable[torch.optim.Optimizer], names: Iterable[str]
) -> float | dict[str, float]:
    """The current learning rate of each parameter ``names`` of ``module`` under ``optimizers``.

    Returns one float when all agree, else a dict by name. A parameter no optimizer updates
    gets ``0.0`` (it does not move, so it contributes no influence).

    Example:
        >>> from torch import nn
        >>> net = nn.Linear(2, 1)
        >>> opt = torch.optim.SGD([{"params": [net.weight], "lr": 0.1}, {"params": [net.bias], "lr": 0.2}])
        >>> learning_rates(net, [opt], ["weight", "bias"])
        {'weight': 0.1, 'bias': 0.2}
    """
    by_id: dict[int, float] = {}
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                by_id.setdefault(id(p), float(group["lr"]))
    params = dict(module.named_parameters())
    rates = {n: by_id.get(id(params[n]), 0.0) for n in names}
    values = set(rates.values())
    return values.pop() if len(values) == 1 else rates


class CheckpointStore:
    """A directory of TracIn checkpoints with an atomic manifest.

    Saving the same ``(epoch, step)`` twice (a resumed run repeating an epoch) replaces the
    entry instead of duplicating it; files not in the manifest (a crash between writing a file
    and the manifest, or a temporary file) are ignored.

    Args:
        dirpath: the store's directory (created on first save).

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> store = CheckpointStore(tempfile.mkdtemp())
        >>> net = nn.Linear(2, 1)
        >>> _ = store.save(Checkpoint.from_module(net, lr=0.1, epoch=0, step=5))
        >>> _ = store.save(Checkpoint.from_module(net, lr=0.1, epoch=0, step=5))  # no duplicate
        >>> len(store), store[0].lr, sorted(store[0].params)
        (1, 0.1, ['bias', 'weight'])
    """

    def __init__(self, dirpath: str | os.PathLike[str]) -> None:
        self.dirpath = Path(dirpath)

    @property
    def manifest_path(self) -> Path:
        return self.dirpath / MANIFEST

    @property
    def entries(self) -> list[CheckpointEntry]:
        """The complete checkpoints, ordered by ``(epoch, step)``; empty if none saved."""
        if not self.manifest_path.exists():
            return []
        data = json.loads(self.manifest_path.read_text())
        if data.get("format") != _FORMAT:
            raise ValueError(
                f"{self.manifest_path} is not a lightning-xai TracIn manifest "
                f"(format {data.get('format')!r}); point the store at a TracInCheckpoint dirpath."
            )
        return [
            CheckpointEntry(
                file=e["file"],
                epoch=int(e["epoch"]),
                step=int(e["step"]),
                lr=e["lr"],
                params=tuple(e["params"]),
            )
            for e in data["entries"]
        ]

    def _write_manifest(self, entries: list[CheckpointEntry]) -> None:
        entries = sorted(entries, key=lambda e: (e.epoch, e.step, e.file))
        rows = [
            {"file": e.file, "epoch": e.epoch, "step": e.step, "lr": e.lr, "params": list(e.params)}
            for e in entries
        ]
        atomic_write(self.manifest_path, json.dumps({"format": _FORMAT, "entries": rows}, indent=1))

    def save(self, checkpoint: Checkpoint, name: str | None = None) -> Path:
        """Write ``checkpoint`` atomically and add it to the manifest; returns its path.

        The default file name is ``epoch=EEEE-step=SSSSSSS.pt``; an existing entry with the same
        file name is replaced.
        """
        name = name or f"epoch={checkpoint.epoch:04d}-step={checkpoint.step:07d}.pt"
        payload = {
            "params": checkpoint.params,
            "buffers": checkpoint.buffers,
            "lr": checkpoint.lr,
            "epoch": checkpoint.epoch,
            "step": checkpoint.step,
        }
        path = atomic_save(self.dirpath / name, lambda f: torch.save(payload, f))
        entry = CheckpointEntry(
            file=name,
            epoch=checkpoint.epoch,
            step=checkpoint.step,
            lr=checkpoint.lr,
            params=tuple(checkpoint.params),
        )
        self._write_manifest([e for e in self.entries if e.file != name] + [entry])
        return path

    def load(
        self, entry: CheckpointEntry | int, map_location: str | torch.device = "cpu"
    ) -> Checkpoint:
        """Load one checkpoint (by entry or position) with ``weights_only=True``."""
        if isinstance(entry, int):
            entry = self.entries[entry]
        data = torch.load(self.dirpath / entry.file, map_location=map_location, weights_only=True)
        return Checkpoint(
            params=dict(data["params"]),
            lr=data["lr"],
            buffers=dict(data.get("buffers", {})),
            epoch=int(data.get("epoch", entry.epoch)),
            step=int(data.get("step", entry.step)),
        )

    def truncate(self, epoch: int) -> list[CheckpointEntry]:
        """Drop entries taken at ``epoch`` or later (a resumed run will redo them).

        Returns the dropped entries; their files are deleted after the manifest is updated.
        """
        entries = self.entries
        dropped = [e for e in entries if e.epoch >= epoch]
        if dropped:
            self._write_manifest([e for e in entries if e.epoch < epoch])
            for e in dropped:
                (self.dirpath / e.file).unlink(missing_ok=True)
        return dropped

    def orphans(self) -> list[Path]:
        """Files in the directory that the manifest does not list (left by an interrupted write)."""
        if not self.dirpath.exists():
            return []
        known = {e.file for e in self.entries} | {MANIFEST}
        return sorted(p for p in self.dirpath.iterdir() if p.is_file() and p.name not in known)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Checkpoint:
        return self.load(self.entries[index])

    def __iter__(self) -> Iterator[Checkpoint]:
        for entry in self.entries:
            yield self.load(entry)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.dirpath)!r}, entries={len(self)})"
