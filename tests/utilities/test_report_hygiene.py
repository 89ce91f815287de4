"""File hygiene and non-finite values: what the reporter writes can be trusted and read by others."""

from __future__ import annotations

import csv
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.utilities import Reporter
from lightning_xai.utilities.io import atomic_write
from lightning_xai.utilities.report import NonFiniteWarning


def _trainer(tmp_path: Path) -> pl.Trainer:
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    return pl.Trainer(logger=logger, enable_progress_bar=False, enable_checkpointing=False)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_get_the_permissions_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "a" / "note.md", "x")
        reference = tmp_path / "plain.txt"
        reference.write_text("y")  # what open() gives under this umask, as Lightning's files
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(reference.stat().st_mode)


def test_interrupted_write_leftovers_are_removed_at_the_next_start(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    rep = Reporter(trainer, "leftovers")
    rep.save("fit/kept.json", {"a": 1})
    stale = rep.dir / "fit" / ".kept.json.abc123.tmp"
    stale.write_text("half a file")
    from lightning_xai.utilities import report

    report._CLEANED.discard(rep.dir)  # a new process starts
    Reporter(trainer, "leftovers").save("fit/other.json", {"b": 2})
    assert not stale.exists()
    assert sorted(p.name for p in (rep.dir / "fit").iterdir()) == ["kept.json", "other.json"]


def test_non_finite_scalars_and_histograms_are_skipped_with_one_warning(tmp_path: Path) -> None:
    rep = Reporter(_trainer(tmp_path), "nan_probe")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep.log_scalars({"fit/nan_probe/gap": float("nan"), "fit/nan_probe/ok": 1.0}, step=1)
        rep.log_scalars({"fit/nan_probe/gap": float("inf")}, step=2)
        rep.log_histogram("fit/nan_probe/values", torch.tensor([]), step=1)
        rep.log_histogram("fit/nan_probe/scores", torch.tensor([1.0, float("nan")]), step=1)
        assert rep.log_image("fit/nan_probe/map", np.full((4, 4), np.nan), step=1) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, NonFiniteWarning)]
    assert len(messages) == 4  # one per tag, not one per call
    assert "fit/nan_probe/gap at epoch 0, step 1" in messages[0]
    with (rep.dir / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["tag"] for r in rows] == ["fit/nan_probe/ok"]
    strict = Reporter(_trainer(tmp_path), "strict_probe", strict=True)
    with pytest.raises(ValueError, match="strict=True"):
        strict.log_scalars({"fit/strict_probe/gap": float("nan")}, step=1)


def test_redone_steps_replace_their_rows_after_a_resume(tmp_path: Path) -> None:
    rep = Reporter(_trainer(tmp_path), "resumed")
    for step in (10, 20, 30):
        rep.log_scalars({"fit/resumed/score": step / 10}, step=step)
    rep.log_scalars({"test/resumed/score": 9.0}, step=30)
    # the run crashed after step 30 and resumes from the checkpoint of step 10
    rep.log_scalars({"fit/resumed/score": 2.5}, step=20)
    with (rep.dir / "scalars.csv").open() as f:
        rows = [(r["tag"], int(r["step"]), float(r["value"])) for r in csv.DictReader(f)]
    assert rows == [
        ("fit/resumed/score", 10, 1.0),
        ("test/resumed/score", 30, 9.0),
        ("fit/resumed/score", 20, 2.5),
    ]
