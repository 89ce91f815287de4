"""A real TensorBoard server serves what the reporter wrote (read back over HTTP)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.utilities import Reporter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_tensorboard_serves_reporter_output(tmp_path) -> None:
    trainer = pl.Trainer(
        logger=TensorBoardLogger(str(tmp_path), name="served"), enable_progress_bar=False
    )
    rep = Reporter(trainer, "served")
    for step in range(3):
        rep.log_scalars({"fit/served/score": step / 10}, step)
    rep.log_image("fit/served/heatmap", np.random.rand(8, 8), 2)
    rep.log_text("fit/served/rules", "| a | b |\n|---|---|\n| 1 | 2 |", 2)

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast=false",
            "--reload_interval=1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        deadline, scalars = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            try:
                scalars = _get(f"{base}/scalars/tags")
                if any("fit/served/score" in tags for tags in scalars.values()):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        (run,) = [r for r, tags in scalars.items() if "fit/served/score" in tags]
        values = _get(f"{base}/scalars/scalars?run={run}&tag=fit/served/score")
        assert [(v[1], round(v[2], 6)) for v in values] == [(0, 0.0), (1, 0.1), (2, 0.2)]
        assert "fit/served/heatmap" in _get(f"{base}/images/tags")[run]
        assert "fit/served/rules/text_summary" in _get(f"{base}/text/tags")[run]
    finally:
        server.terminate()
        server.wait(timeout=30)
