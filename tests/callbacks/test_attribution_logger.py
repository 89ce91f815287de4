"""AttributionLogger: images, scalars and files in fit/validate/test, label-free, errors, DDP."""

from __future__ import annotations

import io

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_xai.attribution import make_baseline
from lightning_xai.callbacks import AttributionLogger
from lightning_xai.data import TensorPairDataset
from lightning_xai.modules import Classifier
from tests.helpers import TinyClassifier, make_trainer, tiny_digits

TAG = "{stage}/attribution_logger/{key}"


def _root(tmp_path):
    return tmp_path / "run" / "version_0" / "xai" / "attribution_logger"


def _png_shape(event) -> tuple[int, int]:
    image = Image.open(io.BytesIO(event.encoded_image_string))
    return image.size[1], image.size[0]


def test_logs_images_scalars_and_files_in_fit_validate_and_test(tmp_path, tb_events) -> None:
    cb = AttributionLogger("integrated_gradients", num_samples=6, every_n_epochs=1)
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=2)
    model, dm = TinyClassifier(), tiny_digits()
    trainer.fit(model, datamodule=dm)
    trainer.validate(model, datamodule=dm)
    trainer.test(model, datamodule=dm)

    events = tb_events(tmp_path)
    for stage, runs in (("fit", 2), ("validate", 1), ("test", 1)):
        images = events.Images(TAG.format(stage=stage, key="attributions"))
        assert len(images) == runs
        # two 8x8 tiles per sample (input, overlay) upscaled 8x, four samples per row, under a
        # 16-pixel caption and above an 18-pixel colour legend
        height, width = _png_shape(images[0])
        assert (height, width) == (16 + 2 * (64 + 2) + 2 + 18, 4 * (2 * 64 + 8 + 2) + 2)
        gaps = events.Scalars(TAG.format(stage=stage, key="completeness_gap"))
        assert len(gaps) == runs and all(0 <= g.value < 0.5 for g in gaps)
    drift = events.Scalars(TAG.format(stage="fit", key="drift"))
    assert len(drift) == 1 and -1 <= drift[0].value <= 1
    # validate after fit compares with the same model's last fit attributions
    assert events.Scalars(TAG.format(stage="validate", key="drift"))[0].value == pytest.approx(1.0)

    files = sorted((_root(tmp_path) / "fit").glob("*.pt"))
    assert [f.name for f in files] == ["epoch0000_step0000004.pt", "epoch0001_step0000008.pt"]
    assert len(list((_root(tmp_path) / "fit").glob("*.png"))) == 2
    saved = torch.load(files[-1], weights_only=True)
    assert saved["attributions"].shape == (6, 1, 8, 8)
    assert saved["probe_indices"] == cb.probe_indices["val"]
    expected_inputs = dm.val_dataset.x[cb.probe_indices["val"]]
    torch.testing.assert_close(saved["inputs"], expected_inputs)
    with torch.no_grad():
        preds = model(expected_inputs).argmax(1)
    assert torch.equal(saved["targets"], preds)
    test_file = next((_root(tmp_path) / "test").glob("*.pt"))
    assert torch.load(test_file, weights_only=True)["probe_indices"] == cb.probe_indices["test"]


@pytest.mark.filterwarnings("ignore:'pin_memory' argument")
def test_tabular_inputs_get_a_bar_chart_with_feature_names(tmp_path, tb_events) -> None:
    x = torch.randn(64, 5)
    y = (x[:, 2] > 0).long()
    dm = pl.LightningDataModule.from_datasets(
        train_dataset=TensorPairDataset(x, y), val_dataset=TensorPairDataset(x, y), batch_size=16
    )
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    names = ["age", "height", "signal", "noise", "weight"]
    cb = AttributionLogger(
        "saliency",
        num_samples=8,
        stages=("fit",),
        every_n_epochs=1,
        feature_names=names,
        target="label",
    )
    make_trainer(tmp_path, callbacks=[cb]).fit(Classifier(net, num_classes=2), datamodule=dm)
    (image,) = tb_events(tmp_path).Images(TAG.format(stage="fit", key="attributions"))
    height, width = _png_shape(image)
    assert width == 500 and height > 100  # a matplotlib chart, not a pixel grid
    saved = torch.load(next((_root(tmp_path) / "fit").glob("*.pt")), weights_only=True)
    assert saved["attributions"].shape == (8, 5)
    assert torch.equal(saved["targets"], y[cb.probe_indices["val"]])


def test_label_free_autoencoder_and_mean_baseline(tmp_path, tb_events) -> None:
    from lightning_xai.modules.autoencoder import AutoEncoder

    cb = AttributionLogger(
        "gradient_shap",
        num_samples=4,
        stages=("fit",),
        every_n_epochs=1,
        label_free=True,
        baseline="mean",
    )
    dm = tiny_digits()
    make_trainer(tmp_path, callbacks=[cb]).fit(AutoEncoder(latent_dim=4), datamodule=dm)
    torch.testing.assert_close(cb.attributor.mean_baseline, dm.train_dataset.x.mean(0))
    assert cb.attributor.forward_func.root is not None
    events = tb_events(tmp_path)
    assert len(events.Images(TAG.format(stage="fit", key="attributions"))) == 1
    assert len(events.Scalars(TAG.format(stage="fit", key="completeness_gap"))) == 1
    saved = torch.load(next((_root(tmp_path) / "fit").glob("*.pt")), weights_only=True)
    assert saved["targets"] is None and saved["attributions"].shape == (4, 1, 8, 8)


def test_layer_method_quality_scalars_and_resume_state(tmp_path, tb_events) -> None:
    cb = AttributionLogger(
        "layer_grad_cam", num_samples=4, stages=("validate",), layer="features.0", baseline="blur"
    )
    trainer = make_trainer(tmp_path, callbacks=[cb])
    model = TinyClassifier()
    trainer.validate(model, datamodule=tiny_digits())
    assert len(tb_events(tmp_path).Images(TAG.format(stage="validate", key="attributions"))) == 1
    state = cb.state_dict()
    restored = AttributionLogger("layer_grad_cam", layer="features.0")
    restored.load_state_dict(state)
    assert restored.probe_indices == cb.probe_indices
    torch.testing.assert_close(restored.previous["val"], cb.previous["val"])

    quality = AttributionLogger(
        "saliency", num_samples=3, stages=("test",), infidelity=True, sensitivity=True
    )
    make_trainer(tmp_path / "q", callbacks=[quality]).test(model, datamodule=tiny_digits())
    events = tb_events(tmp_path / "q")
    for key in ("infidelity", "sensitivity"):
        (value,) = events.Scalars(TAG.format(stage="test", key=key))
        assert np.isfinite(value.value) and value.value >= 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "gradcam"}, r"method='gradcam'.*integrated_gradients"),
        ({"baseline": "black"}, r"baseline='black'.*'zeros', 'mean', 'blur'"),
        ({"target": "predicted"}, r"target='predicted'"),
        ({"label_free": True, "target": "label"}, "label_free=True"),
        ({"method": "layer_grad_cam"}, r"needs `layer`.*features\.2"),
        ({"method": "layer_grad_cam", "layer": "features.0", "infidelity": True}, "layer method"),
        ({"method_kwargs": {"steps": 4}}, r"key 'steps'.*n_steps"),
        ({"method": "saliency", "internal_batch_size": 4}, "internal_batch_size=4"),
    ],
)
def test_bad_configuration_fails_at_init(kwargs, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        AttributionLogger(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"method": "layer_grad_cam", "layer": "features.5"},
            r"layer='features\.5'.*'model\.features\.0'",
        ),
        ({"forward_fn": "embed"}, r"forward_fn='embed'.*'encode'"),
    ],
)
def test_bad_model_paths_fail_in_setup_before_training(tmp_path, kwargs, match) -> None:
    trainer = make_trainer(tmp_path, callbacks=[AttributionLogger(**kwargs)])
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert trainer.global_step == 0


def test_two_loggers_need_distinct_names(tmp_path, tb_events) -> None:
    first = AttributionLogger("saliency", num_samples=2, stages=("validate",))
    twin = AttributionLogger(
        "layer_grad_cam", layer="features.0", num_samples=2, stages=("validate",)
    )
    with pytest.raises(MisconfigurationException, match="name='attribution_logger'.*own name"):
        make_trainer(tmp_path, callbacks=[first, twin]).validate(
            TinyClassifier(), datamodule=tiny_digits()
        )
    named = AttributionLogger(
        "layer_grad_cam", layer="features.0", num_samples=2, stages=("validate",), name="grad_cam"
    )
    make_trainer(tmp_path / "ok", callbacks=[first, named]).validate(
        TinyClassifier(), datamodule=tiny_digits()
    )
    events = tb_events(tmp_path / "ok")
    for name in ("attribution_logger", "grad_cam"):
        assert len(events.Images(f"validate/{name}/attributions")) == 1
    assert first.state_key != named.state_key


def test_zeros_baseline_default_is_what_the_method_sees(tmp_path) -> None:
    cb = AttributionLogger("integrated_gradients", num_samples=4, stages=("validate",))
    model = TinyClassifier()
    make_trainer(tmp_path, callbacks=[cb]).validate(model, datamodule=tiny_digits())
    saved = torch.load(next((_root(tmp_path) / "validate").glob("*.pt")), weights_only=True)
    x = saved["inputs"]
    reference = make_baseline("zeros", x)
    with torch.no_grad():
        outputs = model(x).gather(1, saved["targets"][:, None])[:, 0]
        outputs = (
            outputs - model(reference).expand(len(x), -1).gather(1, saved["targets"][:, None])[:, 0]
        )
    torch.testing.assert_close(saved["output_delta"], outputs)


@pytest.mark.ddp
def test_ddp_spawn_runs_on_rank_zero_and_does_not_hang(tmp_path, tb_events) -> None:
    cb = AttributionLogger("integrated_gradients", num_samples=4, stages=("fit",), every_n_epochs=1)
    trainer = make_trainer(
        tmp_path, callbacks=[cb], strategy="ddp_spawn", accelerator="cpu", devices=2, max_epochs=2
    )
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    files = sorted(p.name for p in (_root(tmp_path) / "fit").glob("*.pt"))
    assert len(files) == 2  # one per epoch, written by rank zero only
    events = tb_events(tmp_path)
    assert len(events.Images(TAG.format(stage="fit", key="attributions"))) == 2
    assert len(events.Scalars(TAG.format(stage="fit", key="drift"))) == 1
