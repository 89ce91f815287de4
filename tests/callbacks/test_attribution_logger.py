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
        # six tiles of two 64-px images (8x8 upscaled 8x) fit one row of a TensorBoard card,
        # with a title above, two caption lines under each tile and a legend below
        height, width = _png_shape(images[0])
        assert width <= 1000 and 6 * 2 * 64 < width and 64 + 2 * 13 + 16 + 60 < height < 300
        gaps = events.Scalars(TAG.format(stage=stage, key="completeness_gap"))
        assert len(gaps) == runs and all(0 <= g.value < 0.5 for g in gaps)
    agreement = events.Scalars(TAG.format(stage="fit", key="rank_agreement_with_previous"))
    assert len(agreement) == 1 and -1 <= agreement[0].value <= 1
    # validate after fit compares with the same model's last fit attributions
    (again,) = events.Scalars(TAG.format(stage="validate", key="rank_agreement_with_previous"))
    assert again.value == pytest.approx(1.0)
    assert "fit/attribution_logger/drift" not in events.Tags()["scalars"]

    folder = _root(tmp_path) / "fit" / "attributions"
    files = sorted(folder.glob("*.pt"))
    assert [f.name for f in files] == ["epoch0000_step0000004.pt", "epoch0001_step0000008.pt"]
    assert sorted(p.name for p in folder.glob("*.png")) == [
        f.with_suffix(".png").name for f in files
    ]
    assert sorted(p.name for p in folder.glob("*.json")) == [
        f.with_suffix(".json").name for f in files
    ]
    saved = torch.load(files[-1], weights_only=True)
    assert saved["attributions"].shape == (6, 1, 8, 8)
    assert saved["probe_indices"] == cb.probe_indices["val"]
    expected_inputs = dm.val_dataset.x[cb.probe_indices["val"]]
    torch.testing.assert_close(saved["inputs"], expected_inputs)
    with torch.no_grad():
        preds = model(expected_inputs).argmax(1)
    assert torch.equal(saved["targets"], preds)
    test_file = next((_root(tmp_path) / "test" / "attributions").glob("*.pt"))
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
    assert 500 <= width <= 1000 and height > 100  # a matplotlib chart, not a pixel grid
    saved = torch.load(
        next((_root(tmp_path) / "fit" / "attributions").glob("*.pt")), weights_only=True
    )
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
    saved = torch.load(
        next((_root(tmp_path) / "fit" / "attributions").glob("*.pt")), weights_only=True
    )
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
    saved = torch.load(
        next((_root(tmp_path) / "validate" / "attributions").glob("*.pt")), weights_only=True
    )
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
    files = sorted(p.name for p in (_root(tmp_path) / "fit" / "attributions").glob("*.pt"))
    assert len(files) == 2  # one per epoch, written by rank zero only
    events = tb_events(tmp_path)
    assert len(events.Images(TAG.format(stage="fit", key="attributions"))) == 2
    assert len(events.Scalars(TAG.format(stage="fit", key="rank_agreement_with_previous"))) == 1


def test_saved_config_and_probe_indices_reproduce_the_attributions_exactly(tmp_path) -> None:
    """Sampling methods too: the .pt records the configuration, the mean baseline, the probe
    indices and the run's seed."""
    import json

    from torch.utils.data import default_collate

    from lightning_xai.attribution import AttributionConfig, Attributor

    cb = AttributionLogger(
        "saliency",
        num_samples=5,
        stages=("fit",),
        noise_tunnel="smoothgrad",
        nt_samples=3,
        nt_stdevs=0.2,
        baseline="mean",
        target="label",
        method_kwargs={"abs": False},
    )
    model, dm = TinyClassifier(), tiny_digits()
    make_trainer(tmp_path, callbacks=[cb]).fit(model, datamodule=dm)
    pt = next((_root(tmp_path) / "fit" / "attributions").glob("*.pt"))
    saved = torch.load(pt, weights_only=True)
    recorded = json.loads(pt.with_suffix(".json").read_text())
    for record in (saved, recorded):
        config = record["config"]
        assert config["method"] == "saliency" and config["noise_tunnel"] == "smoothgrad"
        assert (config["nt_samples"], config["nt_stdevs"], config["baseline"]) == (3, 0.2, "mean")
        assert config["method_kwargs"] == {"abs": False} and config["target"] == "label"
        assert record["probe_indices"] == cb.probe_indices["val"]
        assert (record["epoch"], record["step"], record["stage"]) == (0, 4, "fit")

    rebuilt = Attributor(model, AttributionConfig.from_dict(saved["config"]))
    rebuilt.mean_baseline = saved["mean_baseline"]
    batch = default_collate([dm.val_dataset[i] for i in saved["probe_indices"]])
    torch.testing.assert_close(batch[0], saved["inputs"])
    model.eval()
    torch.manual_seed(saved["rng_seed"])
    again = rebuilt.attribute(batch)
    torch.testing.assert_close(again.attributions, saved["attributions"], rtol=0, atol=0)
    torch.manual_seed(saved["rng_seed"] + 1)  # another seed: other noise, other attributions
    assert not torch.equal(rebuilt.attribute(batch).attributions, saved["attributions"])


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_evaluating_a_checkpoint_labels_outputs_with_its_epoch_and_step(
    tmp_path, tb_events
) -> None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    model, dm = TinyClassifier(), tiny_digits()
    make_trainer(
        tmp_path / "fit", callbacks=[checkpoint], max_epochs=2, enable_checkpointing=True
    ).fit(model, datamodule=dm)
    cb = AttributionLogger(num_samples=3, stages=("test",), verbose=False, strict=True)
    trainer = make_trainer(tmp_path, callbacks=[cb])
    assert cb.reporter(trainer).strict is True and cb.verbose is False
    trainer.test(
        TinyClassifier(), datamodule=dm, ckpt_path=checkpoint.last_model_path, verbose=False
    )
    folder = _root(tmp_path) / "test" / "attributions"
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch0001_step0000008.json",
        "epoch0001_step0000008.png",
        "epoch0001_step0000008.pt",
    ]
    (image,) = tb_events(tmp_path).Images(TAG.format(stage="test", key="attributions"))
    assert image.step == 8
    assert torch.load(folder / "epoch0001_step0000008.pt", weights_only=True)["epoch"] == 1


@pytest.mark.filterwarnings("ignore:'pin_memory' argument")
def test_mean_baseline_over_constant_data_is_fine(tmp_path, tb_events) -> None:
    x = torch.full((32, 1, 8, 8), 0.5)
    y = torch.arange(32) % 10
    dm = pl.LightningDataModule.from_datasets(
        train_dataset=TensorPairDataset(x, y), val_dataset=TensorPairDataset(x, y), batch_size=16
    )
    cb = AttributionLogger(
        num_samples=4, stages=("fit",), every_n_epochs=1, baseline="mean", strict=True
    )
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=2)
    # all-zero attributions have no ranking to compare: said once, not an error under strict
    with pytest.warns(
        UserWarning, match=r"epoch 1.*rank_agreement_with_previous skipped.*constant"
    ):
        trainer.fit(TinyClassifier(), datamodule=dm)
    saved = torch.load(
        next((_root(tmp_path) / "fit" / "attributions").glob("*.pt")), weights_only=True
    )
    assert torch.equal(saved["attributions"], torch.zeros(4, 1, 8, 8)) and saved["finite"]
    gaps = tb_events(tmp_path).Scalars(TAG.format(stage="fit", key="completeness_gap"))
    assert [g.value for g in gaps] == [0.0, 0.0]


def test_shared_scale_is_stated_in_the_picture_and_the_record(tmp_path) -> None:
    import json

    cb = AttributionLogger(
        "layer_grad_cam", layer="features.2", num_samples=4, stages=("validate",), scale="shared"
    )
    make_trainer(tmp_path, callbacks=[cb]).validate(TinyClassifier(), datamodule=tiny_digits())
    folder = _root(tmp_path) / "validate" / "attributions"
    record = json.loads(next(folder.glob("*.json")).read_text())
    assert record["scale"] == "shared" and record["config"]["layer"] == "features.2"
    saved = torch.load(next(folder.glob("*.pt")), weights_only=True)
    assert saved["attributions"].shape == (4, 1, 4, 4)  # the pooled layer's 4x4 map
    from lightning_xai.attribution import AttributionResult

    # what the picture draws: the map bilinearly upsampled to the 8x8 input, not blocks
    maps = AttributionResult(saved["attributions"], saved["inputs"], None, "x").heatmaps()
    blocks = saved["attributions"][:, 0].repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert maps.shape == (4, 8, 8) and not torch.allclose(maps, blocks)
    assert Image.open(next(folder.glob("*.png"))).size[0] <= 1000
