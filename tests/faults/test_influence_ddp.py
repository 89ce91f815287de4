"""DDP ranks that disagree about the TracIn checkpoint store: every rank stops with the same
clear error, within 60 s, and none computes a silently wrong answer.

Each scenario runs a real 2-process ``ddp_spawn`` fit (gloo, CPU) in a child Python process with
a hard timeout, so a hang fails the test instead of blocking the run. Rank 1 gets its own view
of the store (the environment-dependent path a non-shared filesystem gives): missing, stale or
with a file removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl

from lightning_xai.callbacks import InfluenceLogger
from lightning_xai.influence import Checkpoint, CheckpointStore
from tests.helpers import TinyClassifier, make_trainer, tiny_digits

ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 60.0  # the target: every disagreement ends in an error on every rank within this


class RecordingInfluenceLogger(InfluenceLogger):
    """Writes ``rank<R>.json`` (the error and when) when ``check`` or ``run`` raise on a rank."""

    def __init__(self, out: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out = out

    def _record(self, trainer: pl.Trainer, err: BaseException, started: float) -> None:
        row = {
            "rank": trainer.global_rank,
            "type": type(err).__name__,
            "message": str(err),
            "seconds": time.time() - started,
        }
        Path(self.out, f"rank{trainer.global_rank}.json").write_text(json.dumps(row))

    def check(self, trainer, pl_module, stage) -> None:  # noqa: ANN001 - test double
        started = time.time()
        try:
            super().check(trainer, pl_module, stage)
        except BaseException as err:
            self._record(trainer, err, started)
            raise

    def run(self, trainer, pl_module, stage, split) -> None:  # noqa: ANN001 - test double
        started = time.time()
        try:
            super().run(trainer, pl_module, stage, split)
        except BaseException as err:
            self._record(trainer, err, started)
            raise
        Path(self.out, f"rank{trainer.global_rank}.done").write_text("ok")


class RankOneView(pl.Callback):
    """On rank 1 only: point the influence logger at ``view`` (after setup), and optionally
    delete ``remove`` from it when training starts (after the configuration checks)."""

    def __init__(self, view: str, remove: str | None = None) -> None:
        self.view = view
        self.remove = remove

    def setup(self, trainer, pl_module, stage) -> None:  # noqa: ANN001
        if trainer.global_rank == 1:
            for cb in trainer.callbacks:
                if isinstance(cb, InfluenceLogger):
                    cb.checkpoints = self.view

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.global_rank == 1 and self.remove:
            Path(self.view, self.remove).unlink()


def make_store(path: Path, epochs: int = 2) -> CheckpointStore:
    """A store of a TinyClassifier's checkpoints (the architecture the scenarios train)."""
    store = CheckpointStore(path)
    module = TinyClassifier()
    for epoch in range(epochs):
        for p in module.parameters():
            p.data.add_(0.01)
        store.save(Checkpoint.from_module(module, 0.05, epoch=epoch, step=epoch + 1))
    return store


def scenario(name: str, tmp: str) -> None:
    """Run in a child process: a 2-rank ddp_spawn fit in which rank 1 sees ``name``'s view."""
    tmp_path = Path(tmp)
    store = make_store(tmp_path / "store")
    view = tmp_path / "rank1_view"
    remove = None
    if name == "unseen":
        pass  # rank 1's path does not exist
    elif name == "stale":
        shutil.copytree(store.dirpath, view)
        data = json.loads((view / "manifest.json").read_text())
        data["entries"] = data["entries"][:1]  # an older manifest: one epoch behind
        (view / "manifest.json").write_text(json.dumps(data))
    elif name == "missing_file":
        shutil.copytree(store.dirpath, view)
        remove = store.entries[-1].file
    elif name == "agreeing":
        shutil.copytree(store.dirpath, view)  # an identical copy: must work
    out = tmp_path / "out"
    out.mkdir()
    logger_cb = RecordingInfluenceLogger(
        str(out),
        stages=("fit",),
        checkpoints=str(store.dirpath),
        num_samples=2,
        k=2,
        top_n=4,
        batch_size=64,
    )
    trainer = make_trainer(
        tmp_path / "logs",
        callbacks=[RankOneView(str(view), remove), logger_cb],
        strategy="ddp_spawn",
        devices=2,
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
    )
    started = time.time()
    try:
        trainer.fit(TinyClassifier(), datamodule=tiny_digits(batch_size=64))
        result = {"error": None}
    except BaseException as err:  # noqa: BLE001 - recorded for the test
        result = {"error": f"{type(err).__name__}: {err}"}
    result["seconds"] = time.time() - started
    (tmp_path / "main.json").write_text(json.dumps(result))


def run_scenario(name: str, tmp_path: Path, timeout: float = 240.0) -> dict[str, Any]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    code = f"from tests.faults.test_influence_ddp import scenario; scenario({name!r}, {str(tmp_path)!r})"
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and its spawned ranks
        proc.communicate()
        pytest.fail(f"scenario {name!r} hung: no result after {timeout:.0f} s")
    main = (
        json.loads((tmp_path / "main.json").read_text())
        if (tmp_path / "main.json").exists()
        else None
    )
    assert main is not None, output.decode(errors="replace")[-3000:]
    ranks = {
        int(p.stem[4:]): json.loads(p.read_text()) for p in (tmp_path / "out").glob("rank*.json")
    }
    return {"main": main, "ranks": ranks, "wall": time.time() - started, "out": tmp_path / "out"}


def assert_every_rank_failed(result: dict[str, Any], *phrases: str) -> None:
    main, ranks = result["main"], result["ranks"]
    assert main["error"] is not None, "the fit finished although rank 1 cannot proceed"
    assert sorted(ranks) == [0, 1], f"not every rank raised: {ranks}"
    messages = {r["message"] for r in ranks.values()}
    assert len(messages) == 1, f"ranks raised different errors: {messages}"
    (message,) = messages
    for phrase in phrases:
        assert phrase in message, message
        assert phrase in main["error"]
    assert all(r["seconds"] < LIMIT_S for r in ranks.values()), ranks
    timings = {r: round(v["seconds"], 2) for r, v in ranks.items()}
    print(f"error on every rank after {timings} s (fit: {main['seconds']:.1f} s)")
    assert main["seconds"] < LIMIT_S + 30  # startup of two processes included


@pytest.mark.ddp
def test_rank_that_cannot_see_the_store_stops_every_rank_at_setup(tmp_path) -> None:
    result = run_scenario("unseen", tmp_path)
    assert_every_rank_failed(result, "rank 1 of 2", "rank1_view", "is not a directory")
    assert all(r["type"] == "MisconfigurationException" for r in result["ranks"].values())
    assert not list(result["out"].glob("*.done"))  # nothing computed, no training step


@pytest.mark.ddp
@pytest.mark.parametrize(
    ("name", "phrases"),
    [
        ("stale", ("rank 1 of 2", "stale or different copy", "manifest")),
        pytest.param(
            "missing_file",
            ("rank 1 of 2", "epoch=0001-step=0000002.pt", "is missing"),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_stale_manifest_or_missing_file_on_rank_one_stops_every_rank(
    tmp_path, name, phrases
) -> None:
    result = run_scenario(name, tmp_path)
    assert_every_rank_failed(result, *phrases)
    assert not list(result["out"].glob("*.done"))  # no rank reported a (half wrong) result


@pytest.mark.ddp
@pytest.mark.slow
def test_identical_copies_agree_and_compute(tmp_path) -> None:
    result = run_scenario("agreeing", tmp_path)
    assert result["main"]["error"] is None, result["main"]
    assert sorted(p.name for p in result["out"].glob("*.done")) == ["rank0.done", "rank1.done"]
