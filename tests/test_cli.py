"""The `lightning-xai` LightningCLI runs the shipped configs; the quickstart logs to TensorBoard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_xai.cli import build_cli

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _fast_overrides(tmp_path: Path) -> list[str]:
    return [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_instantiates(config: Path, tmp_path) -> None:
    cli = build_cli(["--config", str(config), *_fast_overrides(tmp_path)], run=False)
    assert cli.model is not None and cli.datamodule is not None


def test_quickstart_fit_then_test_logs_to_tensorboard(tmp_path, tb_events, capsys) -> None:
    config = ROOT / "configs" / "quickstart.yaml"
    ckpt: list[str] = []
    for command in ("fit", "test"):
        cli = build_cli([command, "--config", str(config), *_fast_overrides(tmp_path), *ckpt])
        assert cli.trainer.state.finished
        ckpt = ["--ckpt_path", cli.trainer.checkpoint_callback.best_model_path]
        printed = capsys.readouterr().out
        # the run ends by saying where everything is
        assert f"Run directory:      {cli.trainer.log_dir}" in printed
        assert "Best checkpoint:" in printed and "Explanation report:" in printed
    events = tb_events(tmp_path)
    assert events.Scalars("train/loss") and events.Scalars("val/acc") and events.Scalars("test/acc")
    assert "hp_metric" not in events.Tags()["scalars"]  # no placeholder among the curves
    saved = yaml.safe_load((Path(cli.trainer.log_dir) / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "lightning_xai.modules.Classifier"


def test_console_script_reports_bad_config_value(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_xai.cli",
            "fit",
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--model.init_args.optimizer=adagrad",
            *_fast_overrides(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode != 0
    assert "optimizer" in result.stderr and "adagrad" in result.stderr
