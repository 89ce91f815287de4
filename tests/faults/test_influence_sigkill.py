"""SIGKILL during TracInCheckpoint writes, then resume: the store stays consistent.

A child process runs a small fit that records TracIn checkpoints (writes slowed down so kills
land inside them often) and is killed with ``SIGKILL`` at random moments; after every kill the
store is checked: the manifest parses, lists each epoch at most once, every entry loads with
``weights_only=True`` and matches its recorded hash, and no file under a final name is
truncated. A last resume must complete with every epoch recorded exactly once and no temporary
file left. The default run kills a handful of times; the ``slow`` variant 30 times.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_xai.influence import CheckpointStore

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 6


def child(tmp: str, slow_s: float) -> None:
    """The killed program: fit (resuming from the newest readable Lightning checkpoint)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    import lightning_xai.utilities.io as xio
    from lightning_xai.callbacks import TracInCheckpoint
    from tests.helpers import TinyClassifier, make_trainer, tiny_digits

    real_fsync = xio.os.fsync

    def slow_fsync(fd: int) -> None:  # widen the window between write and rename
        time.sleep(slow_s)
        real_fsync(fd)

    xio.os.fsync = slow_fsync
    root = Path(tmp)
    resume = None
    for path in sorted((root / "ckpt").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)[::-1]:
        try:
            torch.load(path, weights_only=False)
            resume = str(path)
            break
        except Exception:  # noqa: BLE001, S112 - a checkpoint Lightning did not finish
            continue
    recorder = TracInCheckpoint(dirpath=root / "store", overwrite=resume is None)
    trainer = make_trainer(
        root / "logs",
        callbacks=[
            recorder,
            ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1, every_n_epochs=1),
        ],
        enable_checkpointing=True,
        max_epochs=EPOCHS,
        limit_train_batches=2,
        limit_val_batches=0,
    )
    print("ready", flush=True)
    trainer.fit(TinyClassifier(), datamodule=tiny_digits(), ckpt_path=resume)
    (root / "done").write_text("ok")


def start(tmp: Path, slow_s: float) -> subprocess.Popen:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    code = f"from tests.faults.test_influence_sigkill import child; child({str(tmp)!r}, {slow_s})"
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = proc.stdout.readline()  # imports done, the fit starts now
    assert line.strip() == b"ready", proc.stderr.read().decode(errors="replace")[-2000:]
    return proc


def check_store(store_dir: Path, complete: bool) -> int:
    """Assert the store's invariants; return the number of files opened."""
    store = CheckpointStore(store_dir)
    if not store_dir.exists():
        assert not complete
        return 0
    entries = store.entries  # the manifest parses (it is replaced atomically)
    epochs = [e.epoch for e in entries]
    assert len(epochs) == len(set(epochs)), f"an epoch listed twice: {epochs}"
    opened = 0
    for entry in entries:
        ckpt = store.load(entry)  # size + hash checked, weights_only=True
        assert ckpt.epoch == entry.epoch
        opened += 1
    for path in store_dir.glob("*.pt"):  # final names only; temporaries start with '.'
        torch.load(path, weights_only=True)  # never a truncated file under a final name
        opened += 1
    if complete:
        assert epochs == list(range(EPOCHS))
        assert not [p for p in store_dir.iterdir() if p.name.endswith(".tmp")]
        assert store.orphans() == []
    return opened


def kill_and_resume(tmp_path: Path, kills: int, seed: int, slow_s: float = 0.03) -> dict:
    rng = random.Random(seed)
    done = killed = opened = mid_write = 0
    while killed < kills:
        proc = start(tmp_path, slow_s)
        time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        store_dir = tmp_path / "store"
        if store_dir.is_dir() and any(p.name.endswith(".tmp") for p in store_dir.iterdir()):
            mid_write += 1  # the kill landed inside a write: its temporary file is left
        opened += check_store(tmp_path / "store", complete=False)
        if (tmp_path / "done").exists():  # finished before the kill: start a new run
            done += 1
            for path in (tmp_path / "ckpt").glob("*.ckpt"):
                path.unlink()
            (tmp_path / "done").unlink()
    proc = start(tmp_path, 0.0)  # the resume that must finish
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    opened += check_store(tmp_path / "store", complete=True)
    return {
        "kills": killed,
        "kills_inside_a_write": mid_write,
        "finished_runs": done,
        "files_opened": opened,
    }


def test_sigkill_during_writes_then_resume(tmp_path) -> None:
    stats = kill_and_resume(tmp_path, kills=3, seed=12)
    assert stats["kills"] == 3 and stats["files_opened"] > 0
    print(stats)


@pytest.mark.slow
def test_thirty_sigkills_during_writes_then_resume(tmp_path) -> None:
    stats = kill_and_resume(tmp_path, kills=30, seed=2026)
    assert stats["kills"] == 30
    print(stats)
