"""AttributionLogger on user models through a real Trainer (fit, validate, test), TensorBoard
events read back, numbers compared with captum called directly, setup errors before training."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from PIL import Image
from pytorch_lightning.demos.boring_classes import BoringModel, RandomDataset
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import TensorDataset

from lightning_xai.callbacks import AttributionLogger
from lightning_xai.modules import Classifier
from lightning_xai.utilities.batches import BatchAdapter
from tests.attribution.models import ReusedMLP
from tests.helpers import make_trainer
from tests.user_models import (
    TABULAR_COLUMNS,
    DictDataset,
    HFTextClassifier,
    RGBResNet,
    SignalNet,
    TabularNet,
    TwoInputNet,
    UserDataModule,
    loader,
    rgb_data,
    signal_data,
    tabular_data,
    token_data,
    two_input_data,
)

TAG = "{stage}/attribution_logger/{key}"
STAGES = ("fit", "validate", "test")
VOCAB = ["[PAD]", "[CLS]", "[SEP]", "great", "awful"] + [f"w{i}" for i in range(5, 20)]
EMBEDDINGS = "bert.bert.embeddings.word_embeddings"


def _files(tmp_path: Path, stage: str, suffix: str = ".pt") -> list[Path]:
    root = tmp_path / "run" / "version_0" / "xai" / "attribution_logger" / stage / "attributions"
    return sorted(root.rglob(f"*{suffix}"))


def _saved(tmp_path: Path, stage: str) -> dict[str, Any]:
    return torch.load(_files(tmp_path, stage)[-1], weights_only=True)


def _png_size(event) -> tuple[int, int]:
    image = Image.open(io.BytesIO(event.encoded_image_string))
    return image.size[1], image.size[0]


def _run_every_stage(tmp_path: Path, model, cb: AttributionLogger, train, val, test=None):
    trainer = make_trainer(tmp_path, callbacks=[cb], limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, train_dataloaders=loader(train), val_dataloaders=loader(val))
    trainer.validate(model, dataloaders=loader(val), verbose=False)
    trainer.test(model, dataloaders=loader(test if test is not None else val), verbose=False)
    return trainer


def _max_relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12))


def test_bert_token_attributions_in_every_stage(tmp_path, tb_events) -> None:
    model = HFTextClassifier()
    cb = AttributionLogger(num_samples=4, every_n_epochs=1, layer=EMBEDDINGS, vocabulary=VOCAB)
    data = [DictDataset(token_data(n=32, seed=s)) for s in (0, 1, 2)]
    _run_every_stage(tmp_path, model, cb, *data)
    events = tb_events(tmp_path)
    for stage in STAGES:
        assert len(events.Images(TAG.format(stage=stage, key="attributions"))) == 1
        (markdown,) = events.text(TAG.format(stage=stage, key="tokens"))
        assert "background-color" in markdown and "integrated_gradients" in markdown
        assert "great" in markdown or "awful" in markdown  # ids shown as vocabulary strings
        assert "[PAD]" not in markdown  # padding is left out
        (gap,) = events.Scalars(TAG.format(stage=stage, key="completeness_gap"))
        assert 0 <= gap.value < 0.05
    saved = _saved(tmp_path, "test")
    ids, mask = saved["inputs"], saved["mask"].long()
    assert ids.dtype == torch.long and saved["attributions"].shape == ids.shape
    model.eval()
    lig = LayerIntegratedGradients(
        lambda i, m: model(i, attention_mask=m).logits,
        model.bert.bert.embeddings.word_embeddings,
    )
    expected = (
        lig.attribute(
            ids,
            baselines=0 * ids,
            target=saved["targets"],
            additional_forward_args=(mask,),
            n_steps=8,
        ).sum(-1)
        * mask
    )
    assert _max_relative(saved["attributions"], expected) <= 1e-4


def test_rgb_resnet_non_square_images_in_every_stage(tmp_path, tb_events) -> None:
    model = RGBResNet()
    cb = AttributionLogger(num_samples=3, every_n_epochs=1)
    trainer = make_trainer(tmp_path, callbacks=[cb], limit_train_batches=2, limit_val_batches=1)
    dm = UserDataModule(make=rgb_data)
    trainer.fit(model, datamodule=dm)
    trainer.validate(model, datamodule=dm, verbose=False)
    trainer.test(model, datamodule=dm, verbose=False)
    events = tb_events(tmp_path)
    for stage in STAGES:
        (image,) = events.Images(TAG.format(stage=stage, key="attributions"))
        # 3 tiles of (12x10 input | overlay) upscaled 6x in one row, title, captions, legend
        height, width = _png_size(image)
        assert 12 * 6 + 16 + 2 * 13 + 60 < height < 260 and 3 * 2 * 60 < width <= 1000
        pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        first_input = pixels[22 + 4 : 22 + 4 + 72, 4 + 4 : 4 + 4 + 60].astype(int)
        spread = first_input.max(axis=-1) - first_input.min(axis=-1)
        assert (spread > 60).mean() > 0.2  # the RGB input is shown in colour, not grey
    saved = _saved(tmp_path, "test")
    model.eval()
    expected = IntegratedGradients(model).attribute(
        saved["inputs"], target=saved["targets"], n_steps=8
    )
    assert saved["attributions"].shape == (3, 3, 12, 10)
    assert _max_relative(saved["attributions"], expected) <= 1e-4


def test_two_inputs_get_one_picture_each_and_match_captum(tmp_path, tb_events) -> None:
    model = TwoInputNet()
    cb = AttributionLogger(
        num_samples=4,
        every_n_epochs=1,
        target="label",
        adapter=BatchAdapter(inputs=(0, 1), labels=2),
        feature_names=["f0", "f1", "f2", "f3"],
    )
    data = [two_input_data(n=32, seed=s) for s in (0, 1, 2)]
    _run_every_stage(tmp_path, model, cb, *data)
    events = tb_events(tmp_path)
    for stage in STAGES:
        for key in ("attributions/0", "attributions/1"):
            assert len(events.Images(TAG.format(stage=stage, key=key))) == 1
    saved = _saved(tmp_path, "test")
    image, features = saved["inputs"]
    model.eval()
    expected = IntegratedGradients(model).attribute(
        (image, features), target=saved["targets"], n_steps=8
    )
    for ours, theirs in zip(saved["attributions"], expected):
        assert _max_relative(ours, theirs) <= 1e-4
    index = cb.probe_indices["test"]
    assert torch.equal(saved["targets"], data[2].tensors[2][index])


def test_default_adapter_explains_the_image_and_passes_the_features(tmp_path) -> None:
    model = TwoInputNet()
    cb = AttributionLogger(num_samples=16, stages=("test",))
    data = two_input_data(n=32, seed=2)
    make_trainer(tmp_path, callbacks=[cb]).test(model, dataloaders=loader(data), verbose=False)
    saved = _saved(tmp_path, "test")
    image = saved["inputs"]
    features = data.tensors[1][cb.probe_indices["test"]]
    model.eval()
    with torch.no_grad():
        assert torch.equal(saved["targets"], model(image, features).argmax(1))
        assert not torch.equal(saved["targets"], model(image, None).argmax(1))
    expected = IntegratedGradients(model).attribute(
        image, target=saved["targets"], additional_forward_args=(features,), n_steps=8
    )
    assert _max_relative(saved["attributions"], expected) <= 1e-4


@pytest.mark.parametrize("kind", ["signal", "tabular", "boring"])
def test_signals_tabular_and_boring_model(kind, tmp_path, tb_events) -> None:
    names = None
    if kind == "signal":
        model, data = SignalNet(), [signal_data(n=32, seed=s) for s in (0, 1)]
    elif kind == "tabular":
        model, data = TabularNet(), [tabular_data(n=32, seed=s) for s in (0, 1)]
        names = list(TABULAR_COLUMNS)
    else:
        model, data = BoringModel(), [RandomDataset(32, 32), RandomDataset(32, 32)]
    cb = AttributionLogger(num_samples=4, every_n_epochs=1, feature_names=names)
    _run_every_stage(tmp_path, model, cb, *data)
    events = tb_events(tmp_path)
    for stage in STAGES:
        (image,) = events.Images(TAG.format(stage=stage, key="attributions"))
        height, width = _png_size(image)
        assert height > 100 and width >= 400  # a chart, not a pixel grid
    saved = _saved(tmp_path, "test")
    x = saved["inputs"]
    model.eval()
    with torch.no_grad():
        assert torch.equal(saved["targets"], model(x).argmax(1))  # target "pred"
    expected = IntegratedGradients(model).attribute(x, target=saved["targets"], n_steps=8)
    assert _max_relative(saved["attributions"], expected) <= 1e-4


# ---------------------------------------------------------------------------- setup errors
def _flagged(cls: type, *args: Any, **kwargs: Any):
    """An instance of ``cls`` that records whether a training step ran."""

    class Flagged(cls):  # type: ignore[misc, valid-type]
        stepped = False

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.stepped = True
            return super().training_step(batch, batch_idx)

    return Flagged(*args, **kwargs)


def _tabular(n: int = 16, labels: torch.Tensor | None = None, dtype=torch.float32):
    x, y = tabular_data(n=n).tensors
    return TensorDataset(x.to(dtype), y if labels is None else labels)


def _reused_relu_classifier() -> Classifier:
    return Classifier(ReusedMLP(in_features=5, out_features=2), num_classes=2)


@pytest.mark.parametrize(
    ("make_model", "kwargs", "val", "match"),
    [
        (
            lambda: _flagged(RGBResNet),
            {"method": "occlusion", "method_kwargs": {"sliding_window_shapes": (3, 3)}},
            rgb_data(n=8),
            r"method_kwargs=\{'sliding_window_shapes': \(3, 3\)\}",
        ),
        (
            lambda: _flagged(RGBResNet),
            {"method": "layer_grad_cam", "layer": "layer9.conv1"},
            rgb_data(n=8),
            r"layer='layer9\.conv1'.*'layer1\.conv1'",
        ),
        (
            lambda: _flagged(HFTextClassifier),
            {},
            DictDataset(token_data(n=8)),
            r"set `layer=`.*'bert\.bert\.embeddings\.word_embeddings'",
        ),
        (
            lambda: _flagged(TabularNet),
            {"target": "label"},
            _tabular(labels=torch.arange(16) % 5),
            r"target='label'.*class indices up to \d.*\[0, 1\]",
        ),
        (
            lambda: _flagged(TabularNet),
            {},
            _tabular(dtype=torch.long),
            r"integer token ids.*has no nn\.Embedding",
        ),
    ],
    ids=["captum-assert", "bad-layer", "tokens-without-layer", "labels-range", "dtype"],
)
def test_configuration_errors_fail_before_the_first_training_step(
    make_model, kwargs, val, match, tmp_path
) -> None:
    model = make_model()
    trainer = make_trainer(tmp_path, callbacks=[AttributionLogger(num_samples=4, **kwargs)])
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(model, train_dataloaders=loader(val), val_dataloaders=loader(val))
    assert trainer.global_step == 0 and not model.stepped


def test_deeplift_on_a_reused_relu_fails_before_training(tmp_path) -> None:
    model = _flagged(Classifier, ReusedMLP(in_features=5, out_features=2), num_classes=2)
    trainer = make_trainer(tmp_path, callbacks=[AttributionLogger("deeplift", num_samples=4)])
    data = loader(_tabular())
    with pytest.raises(MisconfigurationException, match=r"used more than once \(.*act1\)"):
        trainer.fit(model, train_dataloaders=data, val_dataloaders=data)
    assert trainer.global_step == 0 and not model.stepped


def test_zero_integration_steps_fail_at_construction() -> None:
    with pytest.raises(MisconfigurationException, match=r"method_kwargs=\{'n_steps': 0\}"):
        AttributionLogger(method_kwargs={"n_steps": 0})
