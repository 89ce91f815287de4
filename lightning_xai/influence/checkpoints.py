"""A crash-safe store of training checkpoints for TracIn.

Each checkpoint is a ``.pt`` file holding the tracked parameters, the buffers and the learning
rate(s) in use when it was taken; ``manifest.json`` lists the checkpoints that are complete,
with each file's size and SHA-256 content hash. Both are written atomically (temporary file +
rename) and the manifest is written last, so a crash mid-write leaves at most an orphan file
that no reader trusts. Files are read back with ``torch.load(weights_only=True)``, after their
size and hash are checked against the manifest (manifests written before hashes were recorded
still load). Non-finite values are never recorded, and a file that cannot be used raises a
:class:`~lightning_xai.influence.errors.CheckpointError` naming the file and its manifest entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_xai.influence.errors import CheckpointError, NonFiniteError
from lightning_xai.utilities.io import atomic_save, atomic_write

__all__ = [
    "Checkpoint",
    "CheckpointEntry",
    "CheckpointStore",
    "check_compatible",
    "learning_rates",
    "load_checkpoint_file",
]

MANIFEST = "manifest.json"
_FORMAT = "lightning-xai/tracin-checkpoints/1"


def _non_finite_rates(lr: Any) -> list[str]:
    """Names (``"lr"`` or parameter names) whose learning rate is not a finite number."""
    rates = lr.items() if isinstance(lr, Mapping) else [("lr", lr)]
    bad = []
    for name, value in rates:
        try:
            ok = math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            bad.append(f"{name}={value!r}")
    return bad


def _non_finite_tensors(tensors: Mapping[str, Tensor]) -> list[str]:
    return [
        n
        for n, t in tensors.items()
        if isinstance(t, Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


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

    def non_finite(self) -> list[str]:
        """What holds a NaN or infinite value: learning rates (``"lr=nan"``), parameter and
        buffer names; empty when everything is finite.

        Example:
            >>> from torch import nn
            >>> Checkpoint.from_module(nn.Linear(2, 1), lr=float("nan")).non_finite()
            ['lr=nan']
        """
        return (
            _non_finite_rates(self.lr)
            + _non_finite_tensors(self.params)
            + _non_finite_tensors(self.buffers)
        )

    def check_finite(self, where: str) -> None:
        """Raise :class:`~lightning_xai.influence.errors.NonFiniteError` naming ``where`` and
        the values when a learning rate, parameter or buffer is NaN or infinite."""
        bad = self.non_finite()
        if bad:
            raise NonFiniteError(
                f"{where} holds non-finite values (NaN or inf) in {bad[:8]}: its influence "
                "would be NaN. Record checkpoints of a run whose weights and learning rates are "
                "finite (a diverged run needs a lower learning rate or gradient clipping)."
            )


@dataclass(frozen=True)
class CheckpointEntry:
    """A manifest row: the file (relative to the store) and what it holds.

    ``size`` (bytes) and ``sha256`` (content hash) are recorded on save; manifests written
    before they existed give ``None`` and their files are not verified.
    """

    file: str
    epoch: int
    step: int
    lr: float | dict[str, float]
    params: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None

    def describe(self) -> str:
        """``"manifest entry 'epoch=0001-step=0000004.pt' (epoch 1, step 4)"``."""
        return f"manifest entry {self.file!r} (epoch {self.epoch}, step {self.step})"

    def fingerprint(self) -> tuple[str, int | None, str | None]:
        """``(file, size, sha256)``: what two views of one store must agree on."""
        return (self.file, self.size, self.sha256)


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
    if len(values) == 1:
        return values.pop()
    if any(isinstance(v, float) and math.isnan(v) for v in values):  # NaN != NaN: not one rate
        first = next(iter(rates.values()))
        if all(math.isnan(v) for v in rates.values()):
            return first
    return rates


def load_checkpoint_file(
    path: str | os.PathLike[str],
    entry: CheckpointEntry | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Load one checkpoint file with ``weights_only=True``, checking it first.

    With ``entry`` (its manifest row) the file's size and content hash are compared with the
    recorded ones. Every failure raises :class:`~lightning_xai.influence.errors.CheckpointError`
    naming the file (and the entry); non-finite values raise
    :class:`~lightning_xai.influence.errors.NonFiniteError` naming the file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.pt"
        >>> _ = p.write_bytes(b"PK\\x03half")
        >>> load_checkpoint_file(p)
        Traceback (most recent call last):
        ...
        lightning_xai.influence.errors.CheckpointError: Checkpoint file '...bad.pt' cannot be read (truncated or corrupt?): ...
    """
    path = Path(path)
    where = f"Checkpoint file {str(path)!r}" + (f" ({entry.describe()})" if entry else "")
    raw = _read_verified(path, entry, where)
    try:
        data = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(
            f"{where} cannot be read (truncated or corrupt?): {str(err).splitlines()[0][:200]}. "
            "Delete it (and its manifest entry) or record the checkpoints again."
        ) from err
    if not isinstance(data, Mapping) or "params" not in data or "lr" not in data:
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointError(
            f"{where} is not a TracIn checkpoint: it holds {keys}, expected 'params' and 'lr' "
            "(as written by CheckpointStore.save / TracInCheckpoint)."
        )
    epoch = data.get("epoch", entry.epoch if entry else -1)
    step = data.get("step", entry.step if entry else -1)
    ckpt = Checkpoint(
        params=dict(data["params"]),
        lr=data["lr"],
        buffers=dict(data.get("buffers", {})),
        epoch=int(epoch),
        step=int(step),
    )
    ckpt.check_finite(where)
    return ckpt


def _read_verified(path: Path, entry: CheckpointEntry | None, where: str) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise CheckpointError(
            f"{where} is missing: the store lists it but the file is gone (deleted, or this "
            "process sees another copy of the directory). Record the checkpoints again or point "
            "at the complete store."
        ) from err
    except OSError as err:
        raise CheckpointError(f"{where} cannot be opened: {err}.") from err
    if entry is not None:
        _check_fingerprint(raw, entry, where)
    return raw


def _check_fingerprint(raw: bytes, entry: CheckpointEntry, where: str) -> None:
    if entry.size is not None and len(raw) != entry.size:
        raise CheckpointError(
            f"{where} has {len(raw)} bytes but the manifest recorded {entry.size}: the file was "
            "truncated or replaced after it was recorded. Record the checkpoints again."
        )
    if entry.sha256 is not None and hashlib.sha256(raw).hexdigest() != entry.sha256:
        raise CheckpointError(
            f"{where} does not match the content hash the manifest recorded: the file changed "
            "after it was recorded (corrupt, or another run's file). Record the checkpoints "
            "again."
        )


def check_compatible(
    checkpoint: Checkpoint, model: nn.Module, tracked: Sequence[str], where: str
) -> None:
    """Raise :class:`~lightning_xai.influence.errors.CheckpointError` naming ``where`` when
    ``checkpoint`` does not fit ``model``: tracked parameters it lacks, parameters or buffers
    the model does not have, and shapes that differ from the model's.

    Example:
        >>> from torch import nn
        >>> ckpt = Checkpoint.from_module(nn.Linear(3, 2), lr=0.1)
        >>> check_compatible(ckpt, nn.Linear(4, 2), ["weight"], "checkpoint 'a.pt'")
        Traceback (most recent call last):
        ...
        lightning_xai.influence.errors.CheckpointError: checkpoint 'a.pt' does not fit Linear (another architecture?): shapes differ: weight: checkpoint (2, 3) vs model (2, 4). ...
    """
    own = {n: tuple(p.shape) for n, p in model.named_parameters()}
    own.update({n: tuple(b.shape) for n, b in model.named_buffers()})
    held = {n: tuple(t.shape) for n, t in {**checkpoint.buffers, **checkpoint.params}.items()}
    missing = [n for n in tracked if n not in checkpoint.params]
    extra = [n for n in held if n not in own]
    shapes = [
        f"{n}: checkpoint {held[n]} vs model {own[n]}"
        for n in held
        if n in own and held[n] != own[n]
    ]
    problems = []
    if missing:
        problems.append(f"missing tracked parameters {missing[:8]}")
    if extra:
        problems.append(
            f"names the model does not have {extra[:8]} (the model's are e.g. {list(own)[:4]})"
        )
    if shapes:
        problems.append("shapes differ: " + "; ".join(shapes[:8]))
    if problems:
        raise CheckpointError(
            f"{where} does not fit {type(model).__name__} (another architecture?): "
            + "; ".join(problems)
            + ". Use the checkpoints recorded for this model, or pass `parameters=` the names "
            "the checkpoints hold."
        )


class CheckpointStore:
    """A directory of TracIn checkpoints with an atomic manifest.

    Saving the same ``(epoch, step)`` twice (a resumed run repeating an epoch) replaces the
    entry instead of duplicating it; files not in the manifest (a crash between writing a file
    and the manifest, or a temporary file) are ignored. Each entry records its file's size and
    SHA-256 hash; :meth:`load` and :meth:`verify` check them.

    Args:
        dirpath: the store's directory (created on first save).
        entries: a fixed list of entries to use instead of reading the manifest (e.g. the list
            one process read, shared with others that must use exactly the same checkpoints).

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> store = CheckpointStore(tempfile.mkdtemp())
        >>> net = nn.Linear(2, 1)
        >>> _ = store.save(Checkpoint.from_module(net, lr=0.1, epoch=0, step=5))
        >>> _ = store.save(Checkpoint.from_module(net, lr=0.1, epoch=0, step=5))  # no duplicate
        >>> len(store), store[0].lr, sorted(store[0].params)
        (1, 0.1, ['bias', 'weight'])
        >>> store.verify()  # sizes and hashes match the manifest
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        entries: Sequence[CheckpointEntry] | None = None,
    ) -> None:
        if not isinstance(dirpath, (str, os.PathLike)) or not str(dirpath).strip():
            raise TypeError(
                f"`dirpath` must be a directory path (str or os.PathLike), got {dirpath!r}."
            )
        if Path(dirpath).is_file():
            raise CheckpointError(
                f"`dirpath={str(dirpath)!r}` is a file; a checkpoint store is a directory. "
                "Pass a directory (new or written by TracInCheckpoint)."
            )
        if entries is not None and not all(isinstance(e, CheckpointEntry) for e in entries):
            raise TypeError("`entries` must be a list of CheckpointEntry or None.")
        self.dirpath = Path(dirpath)
        self._fixed = list(entries) if entries is not None else None

    @property
    def manifest_path(self) -> Path:
        return self.dirpath / MANIFEST

    def _manifest(self) -> dict[str, Any]:
        path = self.manifest_path
        try:
            text = path.read_text()
        except FileNotFoundError:
            return {"format": _FORMAT, "entries": [], "skipped": []}
        except (OSError, UnicodeDecodeError) as err:
            raise CheckpointError(f"The manifest {str(path)!r} cannot be read: {err}.") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CheckpointError(
                f"The manifest {str(path)!r} is not valid JSON ({err.msg} at line {err.lineno}; "
                "truncated or corrupt?). Record the checkpoints again into a fresh directory, or "
                "restore the manifest."
            ) from err
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CheckpointError(
                f"{str(path)!r} is not a lightning-xai TracIn manifest (format {found!r}); "
                "point the store at a TracInCheckpoint dirpath."
            )
        return data

    @property
    def entries(self) -> list[CheckpointEntry]:
        """The complete checkpoints, ordered by ``(epoch, step)``; empty if none saved.

        Raises:
            CheckpointError: naming the manifest (and the entry) when it is unreadable, not
                JSON, or an entry lacks a field.
        """
        if self._fixed is not None:
            return list(self._fixed)
        rows = self._manifest().get("entries", [])
        out = []
        for i, e in enumerate(rows):
            try:
                out.append(
                    CheckpointEntry(
                        file=str(e["file"]),
                        epoch=int(e["epoch"]),
                        step=int(e["step"]),
                        lr=e["lr"],
                        params=tuple(e["params"]),
                        size=None if e.get("size") is None else int(e["size"]),
                        sha256=e.get("sha256"),
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                raise CheckpointError(
                    f"The manifest {str(self.manifest_path)!r} entry #{i} ({e!r:.120}) is "
                    f"malformed ({type(err).__name__}: {err}); restore the manifest or record the "
                    "checkpoints again."
                ) from err
        return out

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Moments that were not recorded, ``{"epoch", "step", "reason"}`` each (e.g. a
        non-finite learning rate), as noted by :meth:`record_skipped`."""
        if self._fixed is not None:
            return []
        return list(self._manifest().get("skipped", []))

    def _write_manifest(
        self, entries: list[CheckpointEntry], skipped: list[dict[str, Any]] | None = None
    ) -> None:
        if skipped is None:
            skipped = self.skipped
        entries = sorted(entries, key=lambda e: (e.epoch, e.step, e.file))
        rows = [
            {
                "file": e.file,
                "epoch": e.epoch,
                "step": e.step,
                "lr": e.lr,
                "params": list(e.params),
                "size": e.size,
                "sha256": e.sha256,
            }
            for e in entries
        ]
        data = {"format": _FORMAT, "entries": rows, "skipped": skipped}
        _write(
            self.manifest_path, lambda: atomic_write(self.manifest_path, json.dumps(data, indent=1))
        )

    def save(self, checkpoint: Checkpoint, name: str | None = None) -> Path:
        """Write ``checkpoint`` atomically and add it to the manifest; returns its path.

        The default file name is ``epoch=EEEE-step=SSSSSSS.pt``; an existing entry with the same
        file name is replaced.

        Raises:
            NonFiniteError: a learning rate, parameter or buffer is NaN or infinite (nothing is
                written).
            OSError: the file or the manifest cannot be written (e.g. a full disk), naming the
                file; what was there before is untouched.
        """
        if self._fixed is not None:
            raise TypeError("A CheckpointStore with fixed `entries` is read-only.")
        checkpoint.check_finite(
            f"The checkpoint of epoch {checkpoint.epoch}, step {checkpoint.step}"
        )
        name = name or f"epoch={checkpoint.epoch:04d}-step={checkpoint.step:07d}.pt"
        payload = {
            "params": checkpoint.params,
            "buffers": checkpoint.buffers,
            "lr": checkpoint.lr,
            "epoch": checkpoint.epoch,
            "step": checkpoint.step,
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        raw = buffer.getvalue()
        target = self.dirpath / name
        path = _write(target, lambda: atomic_save(target, lambda f: f.write(raw)))
        entry = CheckpointEntry(
            file=name,
            epoch=checkpoint.epoch,
            step=checkpoint.step,
            lr=checkpoint.lr,
            params=tuple(checkpoint.params),
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
        self._write_manifest([e for e in self.entries if e.file != name] + [entry])
        return path

    def record_skipped(self, epoch: int, step: int, reason: str) -> None:
        """Note in the manifest that the moment ``(epoch, step)`` was not recorded and why."""
        skipped = [s for s in self.skipped if (s.get("epoch"), s.get("step")) != (epoch, step)]
        skipped.append({"epoch": int(epoch), "step": int(step), "reason": str(reason)})
        self._write_manifest(self.entries, sorted(skipped, key=lambda s: (s["epoch"], s["step"])))

    def load(
        self, entry: CheckpointEntry | int, map_location: str | torch.device = "cpu"
    ) -> Checkpoint:
        """Load one checkpoint (by entry or position) with ``weights_only=True``, after checking
        its size and content hash against the manifest (see :func:`load_checkpoint_file`)."""
        if isinstance(entry, int):
            entry = self.entries[entry]
        return load_checkpoint_file(self.dirpath / entry.file, entry, map_location)

    def verify(self, entries: Sequence[CheckpointEntry] | None = None) -> None:
        """Check that the files of ``entries`` (default: all) exist with the recorded size and
        content hash, without unpickling them.

        Raises:
            CheckpointError: naming the first file that is missing or differs.
        """
        for entry in self.entries if entries is None else entries:
            where = f"Checkpoint file {str(self.dirpath / entry.file)!r} ({entry.describe()})"
            _read_verified(self.dirpath / entry.file, entry, where)

    def truncate(self, epoch: int) -> list[CheckpointEntry]:
        """Drop entries taken at ``epoch`` or later (a resumed run will redo them).

        Returns the dropped entries; their files are deleted after the manifest is updated.
        """
        if self._fixed is not None:
            raise TypeError("A CheckpointStore with fixed `entries` is read-only.")
        entries = self.entries
        skipped = self.skipped
        dropped = [e for e in entries if e.epoch >= epoch]
        kept_skips = [s for s in skipped if int(s.get("epoch", -1)) < epoch]
        if dropped or len(kept_skips) != len(skipped):
            self._write_manifest([e for e in entries if e.epoch < epoch], kept_skips)
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
        try:
            count: Any = len(self)
        except CheckpointError:
            count = "unreadable"
        return f"{type(self).__name__}({str(self.dirpath)!r}, entries={count})"


def _write(path: Path, write: Any) -> Path:
    """Run ``write()``; an ``OSError`` (a full disk, no permission) is raised again naming
    ``path``."""
    try:
        return write()
    except OSError as err:
        if str(path) in str(err):
            raise
        raise OSError(
            err.errno,
            f"could not write {str(path)!r}: {err.strerror or err}; the previous version (if "
            "any) is untouched. Free space or fix the permissions, then resume",
        ) from err
