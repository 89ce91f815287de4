"""The text demo config through the `lightning-xai` CLI: fit, then test on the decoy split,
with words coloured by integrated gradients read back from TensorBoard."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from lightning_xai.cli import build_cli
from lightning_xai.data.text import DECOYS, KEYWORDS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "text_keywords.yaml"


def _overrides(tmp_path: Path) -> list[str]:
    return [
        "--trainer.max_epochs=3",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]


def test_text_config_fits_tests_and_logs_words(tmp_path, tb_events) -> None:
    fit = build_cli(["fit", "--config", str(CONFIG), *_overrides(tmp_path)])
    assert fit.trainer.state.finished
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    test = build_cli(
        ["test", "--config", str(CONFIG), f"--ckpt_path={ckpt}", *_overrides(tmp_path)]
    )
    events = tb_events(tmp_path)
    for tag in ("train/loss", "train/penalty", "val/right_reasons", "test/acc"):
        assert events.Scalars(tag), tag
    # the penalty kept the decoy word out of the decision: right on random decoys
    assert events.Scalars("test/acc")[-1].value > 0.85
    assert events.Scalars("test/right_reasons")[-1].value < 0.05
    # token attributions logged as words (not ids), in fit and in test
    keywords = {w for words in KEYWORDS for w in words}
    for stage in ("fit", "test"):
        assert events.Images(f"{stage}/attribution_logger/attributions")
        (text, *_) = events.text(f"{stage}/attribution_logger/tokens")[-1:]
        words = {w for w in keywords | set(DECOYS) if f">{w}</span>" in text}
        assert words & keywords and words & set(DECOYS), text[:300]
    assert events.Scalars("fit/attribution_logger/completeness_gap")[-1].value < 0.05
    saved = yaml.safe_load((Path(test.trainer.log_dir) / "config.yaml").read_text())
    assert saved["model"]["init_args"]["layer"] == "embedding"
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["layer"] == "embedding" and hparams["mask"] == "mask"
