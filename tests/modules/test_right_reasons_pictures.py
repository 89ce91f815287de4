"""ExplanationRegularizedClassifier logs right-reasons pictures of fixed probes in fit,
validate and test; find_another_picture draws successive models side by side; the rrr config
logs images through the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_xai.cli import build_cli
from lightning_xai.data import DecoyDigitsDataModule
from lightning_xai.metrics.functional import right_reasons_score, sparseness
from lightning_xai.modules import ExplanationRegularizedClassifier
from lightning_xai.modules.explanation_regularized import (
    MASK_COLOUR,
    find_another_picture,
    gradient_maps,
    right_reasons_grid,
)
from lightning_xai.nn import MLP
from lightning_xai.penalties import find_another_explanation, log_prob_input_gradients
from tests.helpers import make_trainer

ROOT = Path(__file__).resolve().parents[2]
TAG = "{stage}/right_reasons/{key}"


def _module(**kwargs) -> ExplanationRegularizedClassifier:
    return ExplanationRegularizedClassifier(MLP(196, (16,), 10), num_classes=10, **kwargs)


def _decoded(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def _green(picture: np.ndarray) -> int:
    return int((picture == np.array(MASK_COLOUR, dtype=np.uint8)).all(axis=2).sum())


def test_pictures_and_curves_in_fit_validate_and_test(tmp_path, tb_events) -> None:
    dm = DecoyDigitsDataModule(batch_size=32)
    module = _module(probe_samples=5)
    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.fit(module, datamodule=dm)
    trainer.validate(module, datamodule=dm)
    trainer.test(module, datamodule=dm)

    events = tb_events(tmp_path)
    for stage, runs in (("fit", 2), ("validate", 1), ("test", 1)):
        images = events.Images(TAG.format(stage=stage, key="input_gradients"))
        assert len(images) == runs
        picture = _decoded(images[-1])
        # five tiles of two 70-px panels in one row, a title, captions, a legend
        assert picture.shape[1] <= 1000 and picture.shape[0] > 70 + 40
        assert _green(picture) > 5 * 4 * 10  # each probe's patch outlined (+ the legend box)
        mass = events.Scalars(
            TAG.format(stage=stage, key="quality/forbidden_relevance_mass_lower_is_better")
        )
        assert len(mass) == runs and all(0 <= m.value <= 1 for m in mass)
    files = sorted((tmp_path / "run" / "version_0" / "xai" / "right_reasons").rglob("*.png"))
    assert [f.relative_to(f.parents[2]).as_posix() for f in files] == [
        "fit/input_gradients/epoch0000_step0000004.png",
        "fit/input_gradients/epoch0001_step0000008.png",
        "test/input_gradients/epoch0002_step0000008.png",
        "validate/input_gradients/epoch0002_step0000008.png",
    ]

    # the curve equals the right-reasons score computed directly on the same probes
    dataset = dm.test_dataset
    x, y, mask = (torch.stack([dataset[i][k] for i in module.probe_indices]) for k in range(3))
    module.eval()
    grads, _ = log_prob_input_gradients(module.model, x, create_graph=False)
    (mass,) = events.Scalars(
        TAG.format(stage="test", key="quality/forbidden_relevance_mass_lower_is_better")
    )
    assert mass.value == pytest.approx(float(right_reasons_score(grads, mask)), rel=1e-4)
    (sparse,) = events.Scalars(TAG.format(stage="test", key="quality/sparseness_higher_is_better"))
    assert sparse.value == pytest.approx(float(sparseness(gradient_maps(grads)).mean()), rel=1e-4)


def test_the_same_probes_every_epoch_and_none_when_disabled(tmp_path, tb_events) -> None:
    dm = DecoyDigitsDataModule(batch_size=32)
    module = _module(probe_samples=3, probe_every_n_epochs=None)
    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.fit(module, datamodule=dm)
    first = list(module.probe_indices)
    trainer.validate(module, datamodule=dm)
    assert module.probe_indices == first and len(first) == 3
    # None: only the last fit epoch
    assert len(tb_events(tmp_path).Images("fit/right_reasons/input_gradients")) == 1

    silent = _module(probe_samples=0)
    other = make_trainer(tmp_path / "silent", max_epochs=1)
    other.fit(silent, datamodule=dm)
    assert (
        "images" not in tb_events(tmp_path / "silent").Tags()
        or not tb_events(tmp_path / "silent").Tags()["images"]
    )


def test_bad_probe_arguments_fail_in_init() -> None:
    with pytest.raises(ValueError, match="probe_samples"):
        _module(probe_samples=-1)
    with pytest.raises(ValueError, match="probe_every_n_epochs"):
        _module(probe_every_n_epochs=0)


def test_right_reasons_grid_outlines_the_mask_and_scales_each_panel() -> None:
    x = torch.zeros(2, 1, 6, 6)
    maps = torch.zeros(2, 6, 6)
    maps[0, 0, 0] = 5.0  # one hot pixel in each example, with very different magnitudes
    maps[1, 5, 5] = 0.01
    mask = torch.zeros(2, 6, 6, dtype=torch.bool)
    mask[:, :2, :2] = True
    picture = right_reasons_grid(x, [maps], [mask], ["a", "b"], title="demo")
    # each panel is scaled to its own maximum: both hot pixels are drawn dark red
    dark_red = (picture[..., 0] > 90) & (picture[..., 1] < 30) & (picture[..., 2] < 40)
    assert dark_red.sum() >= 2 * 11 * 11 - 4 * 11 * 4  # two 11x11 zoomed pixels, minus outline
    assert _green(picture) > 0
    with pytest.raises(ValueError, match="NaN"):
        right_reasons_grid(x, [maps * float("nan")], None, title="bad")


def test_find_another_picture_shows_models_side_by_side() -> None:
    torch.manual_seed(0)
    first = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    second = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    mask = find_another_explanation(first, x)
    one = find_another_picture([first], (x, y), title="one model")
    two = find_another_picture([first, second], (x, y), [None, mask], title="two models")
    assert two.shape[1] > one.shape[1]  # a second heatmap panel per tile
    assert _green(two) > 0 and _green(one) <= 12 * 12  # one: only the legend's outline box
    with pytest.raises(ValueError, match="masks"):
        find_another_picture([first, second], (x, y), [None])


def test_rrr_config_logs_an_image_through_the_cli(tmp_path, tb_events) -> None:
    config = ROOT / "configs" / "rrr_decoy_digits.yaml"
    fast = [
        "--config",
        str(config),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    cli = build_cli(["fit", *fast])
    assert cli.trainer.state.finished
    images = tb_events(tmp_path).Tags()["images"]
    assert "fit/right_reasons/input_gradients" in images
    png = next(Path(cli.trainer.log_dir).rglob("right_reasons/fit/input_gradients/*.png"))
    assert _green(np.asarray(Image.open(png).convert("RGB"))) > 8 * 4 * 10
    # evaluating the checkpoint labels the picture with its epoch and step, not 0
    best = cli.trainer.checkpoint_callback.best_model_path
    tested = build_cli(["test", *fast, "--ckpt_path", best])
    folder = Path(tested.trainer.log_dir) / "xai" / "right_reasons" / "test" / "input_gradients"
    assert [p.name for p in folder.glob("*.png")] == ["epoch0000_step0000002.png"]
