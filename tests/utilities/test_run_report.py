"""The run report written from a real ``Trainer`` run: files, TensorBoard text, a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest

from lightning_xai.callbacks import AttributionLogger, InfluenceLogger, TracInCheckpoint
from lightning_xai.utilities.report import Reporter
from lightning_xai.utilities.run_report import REPORT_TAG, RunReportWarning, write_run_report
from tests.helpers import TinyClassifier, make_trainer, tiny_digits

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One small fit then test with three real callbacks; the callbacks' base class writes the
    report at every stage end (timed here by writing it once more after fit)."""
    root = tmp_path_factory.mktemp("run_report")
    callbacks = [
        AttributionLogger(num_samples=4),
        TracInCheckpoint(),
        InfluenceLogger(num_samples=2, k=2),
    ]
    trainer = make_trainer(root, max_epochs=2, callbacks=callbacks)
    model, data = TinyClassifier(), tiny_digits()
    trainer.fit(model, datamodule=data)
    xai = Path(trainer.logger.log_dir) / "xai"  # type: ignore[union-attr]
    fit_md = (xai / "report.md").read_text()  # written by the callbacks at the end of fit
    started = time.perf_counter()
    write_run_report(trainer)
    seconds = time.perf_counter() - started
    trainer.test(model, datamodule=data)
    return {"trainer": trainer, "path": xai / "report.html", "fit_md": fit_md, "seconds": seconds}


def test_report_files_and_tensorboard_text(
    run: dict[str, object], tb_events: Callable[[Path], object]
) -> None:
    trainer, path = run["trainer"], run["path"]
    assert isinstance(path, Path) and path.name == "report.html"
    xai = Path(trainer.logger.log_dir) / "xai"  # type: ignore[union-attr]
    assert path == xai / "report.html"
    page, md = path.read_text(), (xai / "report.md").read_text()
    for name in ("attribution_logger", "influence_logger", "tracin"):
        assert f'<section id="cb-{name}">' in page and f"## {name}" in md
    assert "<title>lightning-xai report: run/version_0</title>" in page
    assert "<dt>stages seen</dt><dd>fit, test</dd>" in page
    assert "stages seen: fit\n" in str(run["fit_md"])  # the report after fit, before test
    # The latest picture of every item the callbacks wrote, and nothing older.
    srcs = {unquote(s) for s in re.findall(r'<img src="([^"]+)"', page)}
    pngs = {p.relative_to(xai).as_posix() for p in xai.rglob("*.png")}
    assert srcs and srcs <= pngs
    assert any(s.startswith("attribution_logger/test/") for s in srcs)
    assert any(s.startswith("influence_logger/fit/most_self_influential/") for s in srcs)
    # The influence ranking is a table; the attribution scalars have a trend line.
    assert re.search(r"fit · ranking · step \d+", page) and "<th>self_influence</th>" in page
    assert "completeness_gap" in page and '<svg class="spark"' in page
    # Every file of every callback folder is linked, relatively.
    hrefs = {unquote(h) for h in re.findall(r'href="([^"#][^"]*)"', page)}
    files = {p.relative_to(xai).as_posix() for p in xai.rglob("*") if p.is_file()}
    assert hrefs == files - {"report.html", "report.md"}
    # The Markdown summary is TensorBoard text at every stage end (and the timed rewrite);
    # the last one is the file.
    texts = tb_events(xai.parent).text(REPORT_TAG)  # type: ignore[attr-defined]
    assert len(texts) == 3 and texts[0] == run["fit_md"] and texts[-1] == md


def test_report_is_cheap(run: dict[str, object]) -> None:
    # The budget is 2% of the quickstart's ~15 s fit; this run is smaller, so allow a lot of
    # slack for a busy machine while still catching a report that rereads heavy files.
    assert float(run["seconds"]) < 1.0  # type: ignore[arg-type]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` (.ci/run installs it)")
def test_a_real_browser_loads_every_picture(run: dict[str, object], tmp_path: Path) -> None:
    xai = Path(run["path"]).parent  # type: ignore[arg-type]
    n = len(re.findall(r"<img ", (xai / "report.html").read_text()))
    assert n >= 3
    assert _images_loaded(xai / "report.html", tmp_path / "profile") == (n, n)

    # The check can fail: a copy of the run with one picture gone loads one fewer.
    copy = tmp_path / "copy"
    shutil.copytree(xai, copy)
    first = re.search(r'<img src="([^"]+)"', (copy / "report.html").read_text())
    assert first is not None
    (copy / unquote(first.group(1))).unlink()
    assert _images_loaded(copy / "report.html", tmp_path / "profile2") == (n - 1, n)


def _images_loaded(page: Path, profile: Path) -> tuple[int, int]:
    """Open ``page`` in headless Chromium and read the ``data-images-loaded`` mark that the
    page's own script sets on ``<body>`` once every picture loaded or failed."""
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            "--virtual-time-budget=3000",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<body[^>]*data-images-loaded="(\d+)/(\d+)"', done.stdout)
    assert found is not None, f"no load mark in the DOM; stderr: {done.stderr[-2000:]}"
    return int(found.group(1)), int(found.group(2))


def test_nothing_to_report_and_failures_only_warn(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    assert write_run_report(trainer) is None  # no callback saved anything: no xai/ folder
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("report.*"))

    Reporter(trainer, "demo").log_scalars({"fit/demo/score": 0.5}, step=0)
    xai = Path(trainer.logger.log_dir) / "xai"  # type: ignore[union-attr]
    (xai / "report.html").mkdir()  # the page cannot be written over a folder
    with pytest.warns(RunReportWarning, match="could not write the run report.*report.html"):
        assert write_run_report(trainer) is None
    assert not (xai / "report.md").exists()
