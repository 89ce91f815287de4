"""AttributionLogger(quality=...): explanation-quality scalars equal the functional metrics
called directly on the same probes and attributions; masks, randomisation, errors."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from PIL import Image
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_xai.callbacks import AttributionLogger
from lightning_xai.callbacks.attribution_logger import QUALITY_METRICS
from lightning_xai.data import DecoyDigitsDataModule
from lightning_xai.metrics.functional import (
    complexity,
    faithfulness_correlation,
    max_sensitivity,
    parameter_randomisation,
    pixel_flipping,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
)
from lightning_xai.modules import Classifier
from lightning_xai.nn import MLP
from tests.helpers import TinyClassifier, make_trainer, tiny_digits

TAG = "{stage}/attribution_logger/quality/{key}"


def _saved(tmp_path, stage: str) -> dict:
    folder = tmp_path / "run" / "version_0" / "xai" / "attribution_logger" / stage / "attributions"
    (pt,) = sorted(folder.glob("*.pt"))
    return torch.load(pt, weights_only=False)


def test_quality_scalars_equal_the_functional_metrics(tmp_path, tb_events) -> None:
    names = [
        "deletion_auc",
        "insertion_auc",
        "faithfulness_correlation",
        "sparseness",
        "complexity",
        "max_sensitivity",
    ]
    cb = AttributionLogger(
        "integrated_gradients", num_samples=4, stages=("validate",), quality=names
    )
    model, dm = TinyClassifier(), tiny_digits()
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.validate(model, datamodule=dm)

    saved = _saved(tmp_path, "validate")
    x, attr, target = saved["inputs"], saved["attributions"], saved["targets"]
    model.eval()
    ig = IntegratedGradients(model)

    def explain(inputs, t):  # captum called directly, as configured: n_steps=8, zero baseline
        return ig.attribute(inputs, target=t, n_steps=8)

    with torch.no_grad():
        expected = {
            # 64 pixels flipped four at a time: at most 16 steps a curve
            "deletion_auc": pixel_flipping(model, x, attr, target, features_per_step=4).auc,
            "insertion_auc": pixel_flipping(
                model, x, attr, target, mode="insertion", features_per_step=4
            ).auc,
            "faithfulness_correlation": faithfulness_correlation(model, x, attr, target),
            "sparseness": sparseness(attr),
            "complexity": complexity(attr),
        }
    expected["max_sensitivity"] = max_sensitivity(explain, x, target)
    events = tb_events(tmp_path)
    record = json.loads(next((tmp_path / "run").rglob("validate/attributions/*.json")).read_text())
    for name in names:
        direction = "higher" if QUALITY_METRICS[name].higher_is_better else "lower"
        (event,) = events.Scalars(TAG.format(stage="validate", key=f"{name}_{direction}_is_better"))
        want = float(expected[name].mean())
        assert event.value == pytest.approx(want, rel=1e-4, abs=1e-5), name
        assert record["quality"][name]["per_example"] == pytest.approx(
            expected[name].tolist(), rel=1e-4, abs=1e-5
        )
    # a trained-ish direction check that could fail: the markdown table states the directions
    (table,) = events.text("validate/attribution_logger/quality")
    assert "| deletion_auc |" in table and "lower is better" in table


def test_default_quality_is_cheap_and_adds_relevance_mass_with_masks(tmp_path, tb_events) -> None:
    plain = AttributionLogger(num_samples=3, stages=("validate",))
    masked = AttributionLogger(
        "saliency",
        num_samples=3,
        stages=("validate",),
        name="masked",
        mask=2,
        mask_meaning="forbidden",
    )
    model = Classifier(MLP(196, (16,), 10), num_classes=10)
    trainer = make_trainer(tmp_path, callbacks=[plain, masked])
    trainer.validate(model, datamodule=DecoyDigitsDataModule(batch_size=32))
    tags = [t for t in tb_events(tmp_path).Tags()["scalars"] if "/quality/" in t]
    assert sorted(tags) == [
        "validate/attribution_logger/quality/deletion_auc_lower_is_better",
        "validate/attribution_logger/quality/sparseness_higher_is_better",
        "validate/masked/quality/deletion_auc_lower_is_better",
        "validate/masked/quality/forbidden_relevance_mass_lower_is_better",
        "validate/masked/quality/sparseness_higher_is_better",
    ]


def test_mask_metrics_and_randomisation_picture(tmp_path, tb_events) -> None:
    dm = DecoyDigitsDataModule(batch_size=32)
    names = ["relevance_mass", "relevance_rank", "pointing_game", "randomisation"]
    cb = AttributionLogger("saliency", num_samples=4, stages=("validate",), quality=names, mask=2)
    model = Classifier(MLP(196, (16,), 10), num_classes=10)
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.validate(model, datamodule=dm)

    saved = _saved(tmp_path, "validate")
    x, attr, target = saved["inputs"], saved["attributions"], saved["targets"]
    mask = torch.stack([dm.val_dataset[i][2] for i in saved["probe_indices"]])
    model.eval()

    def saliency(m, inputs, t):  # captum's Saliency (absolute gradients), called directly
        return Saliency(m).attribute(inputs, target=t)

    randomised = parameter_randomisation(model, x, target, saliency, attributions=attr)
    expected = {
        "relevance_mass_higher_is_better": relevance_mass_accuracy(attr, mask),
        "relevance_rank_higher_is_better": relevance_rank_accuracy(attr, mask),
        "pointing_game_higher_is_better": pointing_game(attr, mask),
        "randomisation_spearman_support_lower_is_better": randomised.spearman_support.mean(0),
    }
    events = tb_events(tmp_path)
    for key, values in expected.items():
        (event,) = events.Scalars(TAG.format(stage="validate", key=key))
        assert event.value == pytest.approx(float(values.mean()), rel=1e-4, abs=1e-5), key
    # the per-layer picture: titled line chart with a legend, one point per randomised layer
    (image,) = events.Images("validate/attribution_logger/randomisation")
    picture = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    assert picture.shape[0] > 300 and picture.shape[1] > 500
    assert (picture < 128).any(axis=2).mean() > 0.01  # text, axes and lines drawn
    record = json.loads(next((tmp_path / "run").rglob("validate/attributions/*.json")).read_text())
    assert record["quality"]["randomisation"]["layers"] == randomised.layers
    per_layer = record["quality"]["randomisation"]["per_layer"]["spearman"]
    assert per_layer == pytest.approx(randomised.spearman.mean(1).tolist(), abs=1e-5)
    # the user's model was not randomised
    assert torch.equal(saliency(model, x, target), attr)


def test_unknown_metric_and_bad_options_fail_in_init() -> None:
    with pytest.raises(
        MisconfigurationException,
        match=r"unknown metrics \['deletion'\].*"
        r"deletion_auc",
    ):
        AttributionLogger(quality=["deletion"])
    with pytest.raises(MisconfigurationException, match="`mask` is None"):
        AttributionLogger(quality=["relevance_mass"])
    with pytest.raises(MisconfigurationException, match="accepts"):
        AttributionLogger(quality_kwargs={"deletion_auc": {"steps": 3}})
    with pytest.raises(MisconfigurationException, match="label_free"):
        AttributionLogger(label_free=True, quality=["deletion_auc"])
    with pytest.raises(MisconfigurationException, match="mask_meaning"):
        AttributionLogger(mask=2, mask_meaning="decoy")  # type: ignore[arg-type]


def test_bad_mask_fails_before_the_first_training_step(tmp_path) -> None:
    cb = AttributionLogger(quality=["relevance_mass"], mask=5)
    model = Classifier(MLP(196, (16,), 10), num_classes=10)
    trainer = make_trainer(tmp_path, callbacks=[cb])
    with pytest.raises(MisconfigurationException, match=r"`mask=5` is not in the probe batch"):
        trainer.fit(model, datamodule=DecoyDigitsDataModule(batch_size=32))
    assert trainer.global_step == 0


def test_quality_kwargs_reach_the_metric(tmp_path, tb_events) -> None:
    cb = AttributionLogger(
        "saliency",
        num_samples=3,
        stages=("validate",),
        quality=["deletion_auc"],
        quality_kwargs={"deletion_auc": {"features_per_step": 64, "softmax": False}},
    )
    model, dm = TinyClassifier(), tiny_digits()
    make_trainer(tmp_path, callbacks=[cb]).validate(model, datamodule=dm)
    saved = _saved(tmp_path, "validate")
    model.eval()
    with torch.no_grad():  # one step: the AUC is the mean of the clean and the deleted score
        out = model(saved["inputs"]).gather(1, saved["targets"][:, None]).squeeze(1)
        blank = model(torch.zeros_like(saved["inputs"])).gather(1, saved["targets"][:, None])
    want = float(((out + blank.squeeze(1)) / 2).mean())
    (event,) = tb_events(tmp_path).Scalars(
        TAG.format(stage="validate", key="deletion_auc_lower_is_better")
    )
    assert math.isclose(event.value, want, rel_tol=1e-4, abs_tol=1e-5)
