r"""Random projections of per-sample gradients, and projected gradient features that can be
stored and reused.

:class:`GradientSketch` maps a ``P``-dimensional gradient to ``dim`` features with a seeded
count sketch: parameter entry ``j`` goes to bucket ``h(j)`` with sign ``s(j)``, so that
``<sketch(g), sketch(g')>`` is an unbiased estimate of ``<g, g'>`` with the variance of a dense
Gaussian projection of the same size. Nothing of size ``P x dim`` is ever formed:

* for a parameter of shape ``(rows, ...)`` the hash is ``h(r, c) = (h_1(r) + h_2(c)) mod dim``
  and ``s(r, c) = s_1(r) s_2(c)`` (``c`` the flattened remainder), drawn from the seed and the
  parameter's name on the model's device; a materialised gradient costs one scatter-add;
* a ``Linear`` weight whose per-sample gradient is the outer product ``d a^T`` (kept factored
  by the influence code) is sketched without forming it: the sketch of an outer product is the
  circular convolution of the sketches of its factors (one FFT of size ``dim``).

Both forms give the same features for the same gradient, so a model that falls back from the
factored path to ``torch.func`` projects identically.

:class:`GradientFeatures` holds the projected training features of every checkpoint; it is
written as ``.npy`` files (memory-mapped when read back) with a JSON manifest holding each
checkpoint's content hash, so a later query costs one matrix product per checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_xai.influence.errors import CheckpointError
from lightning_xai.influence.per_sample_grads import _GradBlocks
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["GradientFeatures", "GradientSketch"]


class GradientSketch:
    """A seeded count sketch of per-sample gradients into ``dim`` features.

    Args:
        dim: the number of features.
        seed: the seed; the hashes of a parameter depend on the seed and its name only.
        device: where hashes are kept and the sketch is computed.

    Example:
        >>> sketch = GradientSketch(dim=64, seed=0)
        >>> g = torch.randn(3, 10, 5)
        >>> features = sketch.dense("w", g.reshape(3, -1), (10, 5))
        >>> features.shape
        torch.Size([3, 64])
        >>> a, d = torch.randn(3, 5), torch.randn(3, 10)  # gradient d a^T of a (10, 5) weight
        >>> outer = (d[:, :, None] * a[:, None, :]).reshape(3, -1)
        >>> torch.allclose(sketch.outer("w", a, d), sketch.dense("w", outer, (10, 5)), atol=1e-5)
        True
    """

    def __init__(self, dim: int, seed: int = 0, device: torch.device | str = "cpu") -> None:
        check_positive_int("dim", dim)
        self.dim = dim
        self.seed = seed
        self.device = torch.device(device)
        self._factors: dict[tuple[str, int, int], tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        self._flat: dict[tuple[str, int, int], tuple[Tensor, Tensor]] = {}

    def _hashes(self, name: str, rows: int, cols: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        key = (name, rows, cols)
        if key not in self._factors:
            g = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63
            )
            h1 = torch.randint(0, self.dim, (rows,), generator=g)
            h2 = torch.randint(0, self.dim, (cols,), generator=g)
            s1 = torch.randint(0, 2, (rows,), generator=g) * 2 - 1
            s2 = torch.randint(0, 2, (cols,), generator=g) * 2 - 1
            self._factors[key] = tuple(t.to(self.device) for t in (h1, s1, h2, s2))  # type: ignore[assignment]
        return self._factors[key]

    @staticmethod
    def _count(x: Tensor, buckets: Tensor, signs: Tensor, dim: int) -> Tensor:
        out = x.new_zeros(x.shape[0], dim)
        return out.index_add_(1, buckets, x * signs.to(x.dtype))

    def dense(self, name: str, grads: Tensor, shape: Sequence[int]) -> Tensor:
        """Sketch materialised gradients ``(B, n)`` of the parameter ``name`` of ``shape``."""
        rows = int(shape[0]) if len(shape) else 1
        cols = max(grads.shape[1] // max(rows, 1), 1)
        key = (name, rows, cols)
        if key not in self._flat:
            h1, s1, h2, s2 = self._hashes(name, rows, cols)
            buckets = ((h1[:, None] + h2[None, :]) % self.dim).reshape(-1)
            self._flat[key] = (buckets, (s1[:, None] * s2[None, :]).reshape(-1))
        buckets, signs = self._flat[key]
        return self._count(grads, buckets, signs, self.dim)

    def outer(self, name: str, a: Tensor, d: Tensor) -> Tensor:
        """Sketch the per-sample outer products ``d[i] a[i]^T`` (a ``Linear`` weight gradient)."""
        h1, s1, h2, s2 = self._hashes(name, d.shape[1], a.shape[1])
        left = torch.fft.rfft(self._count(d, h1, s1, self.dim), n=self.dim)
        right = torch.fft.rfft(self._count(a, h2, s2, self.dim), n=self.dim)
        return torch.fft.irfft(left * right, n=self.dim)

    def __call__(self, blocks: _GradBlocks, shapes: dict[str, tuple[int, ...]]) -> Tensor:
        """``(B, dim)`` features of partly factored per-sample gradients."""
        total: Tensor | None = None
        for name, grads in blocks.parts:
            part = self.dense(name, grads, shapes[name])
            total = part if total is None else total + part
        for name, a, d in blocks.factored:
            part = self.outer(name, a, d)
            total = part if total is None else total + part
        if total is None:
            raise ValueError("No gradients to sketch.")
        return total


# ---------------------------------------------------------------------------- stored features
def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 of named tensors (names, shapes, dtypes and values), for in-memory checkpoints."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class GradientFeatures:
    """Projected per-sample gradient features of ``N`` examples at each checkpoint.

    Attributes:
        features: one ``(N, d)`` float32 tensor per checkpoint (memory-mapped when loaded).
        weights: each checkpoint's weight (its learning rate for TracIn, ``1`` otherwise).
        checkpoints: each checkpoint's content hash (SHA-256), as the store's manifest holds it.
        config: what produced them (projection, dimension, seed, parameters, targets, data
            fingerprint); a query is refused when its own configuration differs.
        extras: further per-checkpoint arrays by name (e.g. per-sample losses).
    """

    features: list[Tensor]
    weights: list[float]
    checkpoints: list[str]
    config: dict[str, Any]
    extras: dict[str, list[Tensor]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features[0].shape[0])

    @property
    def dim(self) -> int:
        """The feature dimension ``d``."""
        return int(self.features[0].shape[1])

    def key(self) -> str:
        """A short hash of the configuration and the checkpoints' hashes."""
        text = json.dumps([self.config, self.checkpoints], sort_keys=True, default=str)
        return f"{zlib.crc32(text.encode()):08x}"

    def save(self, directory: str | os.PathLike) -> Path:
        """Write one ``.npy`` file per checkpoint and array, and a manifest, atomically.

        Returns:
            The manifest's path, ``<directory>/features-<key>.json``.

        Example:
            >>> import tempfile
            >>> f = GradientFeatures([torch.ones(4, 3)], [0.1], ["ab" * 32], {"dim": 3})
            >>> with tempfile.TemporaryDirectory() as d:
            ...     g = GradientFeatures.load(f.save(d))
            ...     (len(g), g.dim, g.weights, torch.equal(g.features[0], f.features[0]))
            (4, 3, [0.1], True)
        """
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        key = self.key()
        arrays: dict[str, list[str]] = {}
        named = {"features": self.features, **self.extras}
        for name, tensors in named.items():
            arrays[name] = []
            for c, tensor in enumerate(tensors):
                file = f"features-{key}-{name}-{c}.npy"
                _atomic(root / file, lambda f, t=tensor: np.save(f, t.detach().cpu().numpy()))
                arrays[name].append(file)
        manifest = {
            "format": 1,
            "weights": self.weights,
            "checkpoints": self.checkpoints,
            "config": self.config,
            "arrays": arrays,
            "length": len(self),
        }
        path = root / f"features-{key}.json"
        _atomic(path, lambda f: f.write(json.dumps(manifest, indent=1, default=str).encode()))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> GradientFeatures:
        """Read features written by :meth:`save` (``mmap``: memory-mapped, read-only)."""
        path = Path(path)
        try:
            manifest = json.loads(path.read_text())
            arrays = {
                name: [
                    torch.from_numpy(np.load(path.parent / f, mmap_mode="c" if mmap else None))
                    for f in files
                ]
                for name, files in manifest["arrays"].items()
            }
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"Stored gradient features {str(path)!r} cannot be read ({err}); delete the "
                "directory's features-* files to recompute them."
            ) from err
        features = arrays.pop("features")
        if any(len(f) != manifest["length"] for f in features):
            raise CheckpointError(
                f"Stored gradient features {str(path)!r} do not hold {manifest['length']} rows "
                "as the manifest says (a partial write?); delete them to recompute."
            )
        return cls(
            features, manifest["weights"], manifest["checkpoints"], manifest["config"], arrays
        )

    @staticmethod
    def find(
        directory: str | os.PathLike, config: dict[str, Any], checkpoints: list[str]
    ) -> Path | None:
        """The manifest under ``directory`` written for ``config`` and ``checkpoints``, if any."""
        probe = GradientFeatures([torch.zeros(0, 0)], [], checkpoints, config)
        path = Path(directory) / f"features-{probe.key()}.json"
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        same = json.loads(json.dumps([config, checkpoints], default=str))
        return path if [manifest.get("config"), manifest.get("checkpoints")] == same else None


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def gaussian_matrix(
    rows: int, dim: int, seed: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """The dense seeded Gaussian projection ``(rows, dim) / sqrt(dim)`` (``projection="gaussian"``)."""
    g = torch.Generator().manual_seed(seed)
    matrix = torch.randn(rows, dim, generator=g)
    return (matrix / math.sqrt(dim)).to(device, dtype)
