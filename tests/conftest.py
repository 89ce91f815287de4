"""Shared fixtures: TensorBoard event files read back, quiet and deterministic torch."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# Spawned DDP workers unpickle test classes by module name: let them import `tests.*`.
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests run many small ops: one intra-op thread avoids BLAS spin-waits on 2 busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_ddp_port():
    """Lightning keeps MASTER_PORT in the environment after a DDP run; give every test a fresh one."""
    saved = {k: os.environ.pop(k) for k in ("MASTER_PORT", "MASTER_ADDR") if k in os.environ}
    yield
    for key in ("MASTER_PORT", "MASTER_ADDR"):
        os.environ.pop(key, None)
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")


@pytest.fixture
def tb_events() -> Callable[[str | Path], object]:
    """Return a loader: ``tb_events(path)`` -> an ``EventAccumulator`` over every event file
    under ``path`` (merged), with nothing sampled away."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class _Merged:
        def __init__(self, accumulators: list[EventAccumulator]) -> None:
            self._acc = accumulators

        def tags(self) -> dict[str, list[str]]:
            merged: dict[str, list[str]] = {}
            for acc in self._acc:
                for kind, names in acc.Tags().items():
                    if isinstance(names, list):
                        merged.setdefault(kind, [])
                        merged[kind] += [n for n in names if n not in merged[kind]]
            return merged

        def _collect(self, method: str, tag: str) -> list:
            out = []
            for acc in self._acc:
                try:
                    out += getattr(acc, method)(tag)
                except KeyError:
                    pass
            if not out:
                raise KeyError(f"tag {tag!r} not found; available: {self.tags()}")
            return out

        Tags = tags  # noqa: N815 - mirrors EventAccumulator

        def Scalars(self, tag: str) -> list:  # noqa: N802 - mirrors EventAccumulator
            return self._collect("Scalars", tag)

        def Images(self, tag: str) -> list:  # noqa: N802
            return self._collect("Images", tag)

        def Tensors(self, tag: str) -> list:  # noqa: N802
            return self._collect("Tensors", tag)

        def Histograms(self, tag: str) -> list:  # noqa: N802
            return self._collect("Histograms", tag)

        def text(self, tag: str) -> list[str]:
            """Markdown strings logged with ``add_text`` under ``tag``."""
            from tensorboard.util import tensor_util

            return [
                tensor_util.make_ndarray(e.tensor_proto).item().decode("utf-8")
                for e in self.Tensors(
                    tag if tag.endswith("/text_summary") else f"{tag}/text_summary"
                )
            ]

    def load(path: str | Path) -> _Merged:
        files = sorted(Path(path).rglob("events.out.tfevents.*"))
        if not files:
            raise FileNotFoundError(f"no TensorBoard event files under {path}")
        accs = []
        for f in files:
            acc = EventAccumulator(
                str(f), size_guidance={"scalars": 0, "images": 0, "tensors": 0, "histograms": 0}
            )
            acc.Reload()
            accs.append(acc)
        return _Merged(accs)

    return load
