"""The reporter writes to TensorBoard (read back from event files) and to plain files."""

from __future__ import annotations

import csv
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger  # noqa: E402

from lightning_xai.utilities import Reporter, atomic_write, to_image_array  # noqa: E402
from lightning_xai.utilities.io import atomic_save  # noqa: E402


def _trainer(tmp_path, loggers=None) -> pl.Trainer:
    loggers = loggers or [TensorBoardLogger(str(tmp_path), name="tb")]
    return pl.Trainer(logger=loggers, enable_progress_bar=False, enable_checkpointing=False)


def test_scalars_images_text_histograms_reach_tensorboard(tmp_path, tb_events) -> None:
    trainer = _trainer(tmp_path)
    rep = Reporter(trainer, "probe")
    rep.log_scalars({"fit/probe/score": 0.25, "fit/probe/gap": torch.tensor(1.5)}, step=3)
    rep.log_scalars({"fit/probe/score": 0.75}, step=4)
    gradient = np.linspace(0, 1, 12 * 16).reshape(12, 16)
    png = rep.log_image("fit/probe/heatmap", gradient, step=3)
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.bar([0, 1], [1, 2])
    fig_png = rep.log_image("fit/probe/bars", fig, step=3)
    table = "| class | rule |\n|---|---|\n| 1 | a & b |"
    md = rep.log_text("fit/probe/rules", table, step=3)
    rep.log_histogram("fit/probe/values", torch.arange(100.0), step=3)

    events = tb_events(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("fit/probe/score")] == [(3, 0.25), (4, 0.75)]
    assert events.Scalars("fit/probe/gap")[0].value == pytest.approx(1.5)
    (image,) = events.Images("fit/probe/heatmap")
    assert (image.height, image.width, image.step) == (12, 16, 3)
    (bars,) = events.Images("fit/probe/bars")
    assert (bars.height, bars.width) == (100, 100)
    assert events.text("fit/probe/rules") == [table]
    (histo,) = events.Histograms("fit/probe/values")
    assert histo.histogram_value.num == 100 and histo.histogram_value.max == 99

    # Plain-file copies under <log_dir>/xai/<name>/.
    root = tmp_path / "tb" / "version_0" / "xai" / "probe"
    assert png == root / "fit" / "heatmap" / "epoch0000_step0000003.png"  # the name is not repeated
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig_png.exists()
    assert md.read_text() == table
    with (root / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["tag"], float(r["value"])) for r in rows] == [
        ("3", "fit/probe/score", 0.25),
        ("3", "fit/probe/gap", 1.5),
        ("4", "fit/probe/score", 0.75),
    ]
    assert torch.equal(
        torch.load(root / "fit/values/epoch0000_step0000003.pt"), torch.arange(100.0).double()
    )


def test_every_logger_gets_scalars(tmp_path, tb_events) -> None:
    tb, csv_logger = (
        TensorBoardLogger(str(tmp_path), name="tb"),
        CSVLogger(str(tmp_path), name="csv"),
    )
    rep = Reporter(_trainer(tmp_path, [tb, csv_logger]), "multi")
    rep.log_scalars({"test/multi/x": 2.0}, step=1)
    csv_logger.save()
    assert tb_events(tmp_path / "tb").Scalars("test/multi/x")[0].value == 2.0
    with open(csv_logger.experiment.metrics_file_path) as f:
        assert list(csv.DictReader(f))[0]["test/multi/x"] == "2.0"
    # The plain copy goes under the first logger's log dir.
    assert rep.dir == tmp_path / "tb" / "version_0" / "xai" / "multi"


def test_save_formats_and_errors(tmp_path) -> None:
    rep = Reporter(_trainer(tmp_path), "files")
    assert json.loads(rep.save("a/b.json", {"t": torch.tensor([1, 2])}).read_text()) == {
        "t": [1, 2]
    }
    rows = [{"index": 1, "score": 0.5}, {"index": 2, "score": 0.25, "label": 3}]
    with rep.save("rank.csv", rows).open() as f:
        assert list(csv.DictReader(f))[1] == {"index": "2", "score": "0.25", "label": "3"}
    with pytest.raises(ValueError, match=r"relpath.*\.xlsx"):
        rep.save("table.xlsx", rows)
    with pytest.raises(ValueError, match="HxW"):
        to_image_array(np.zeros((3, 4, 5, 6)))


def test_atomic_write_keeps_old_file_on_failure(tmp_path) -> None:
    path = atomic_write(tmp_path / "m.json", '{"ok": 1}')

    def crash(f) -> None:
        f.write(b'{"half": ')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save(path, crash)
    assert path.read_text() == '{"ok": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind
