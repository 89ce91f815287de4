"""InfluenceLogger and TracInCheckpoint around models and data as users write them, through a
real Trainer (fit, validate, test) with TensorBoard event files read back."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.demos.boring_classes import BoringModel
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.utils.data import default_collate

from lightning_xai.callbacks import InfluenceLogger, TracInCheckpoint
from lightning_xai.influence import TracIn
from lightning_xai.utilities.batches import BatchAdapter
from tests.helpers import make_trainer
from tests.user_models import (
    DictDataset,
    HFTextClassifier,
    RGBResNet,
    TwoInputNet,
    UserDataModule,
    loader,
    rgb_data,
    token_data,
    two_input_data,
)

pytestmark = pytest.mark.filterwarnings("ignore:Per-sample gradients. torch.func.vmap cannot batch")


def ce(scores: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(scores, y, reduction="none")


def rel_diff(got: Tensor, expected: Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def png(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def root_of(tmp_path, version: int = 0):
    return tmp_path / "run" / f"version_{version}" / "xai" / "influence_logger"


def test_hf_bert_fit_then_test_with_loaders(tmp_path, tb_events) -> None:
    model = HFTextClassifier()
    train = DictDataset(token_data(n=24, seed=1))
    val, test = DictDataset(token_data(n=8, seed=2)), DictDataset(token_data(n=8, seed=3))
    recorder = TracInCheckpoint()
    vocabulary = ["[PAD]", "a", "b", "yes", "no", *(f"w{i}" for i in range(5, 20))]
    cb = InfluenceLogger(num_samples=2, k=2, top_n=4, vocabulary=vocabulary, batch_size=16)
    trainer = make_trainer(tmp_path, callbacks=[recorder, cb], max_epochs=2, limit_train_batches=2)
    trainer.fit(model, loader(train, batch_size=8), loader(val, batch_size=8))
    trainer.test(model, loader(test, batch_size=8))  # the training set: the last fit's

    events = tb_events(tmp_path)
    for stage, split, data in (("fit", "val", val), ("test", "test", test)):
        saved = torch.load(root_of(tmp_path) / stage / "influence_step000004.pt", weights_only=True)
        assert saved["probe_split"] == split
        probes = default_collate([data[i] for i in saved["probe_indices"].tolist()])
        direct = TracIn(model, recorder.store, ce, show_progress=False)
        assert rel_diff(saved["influence"], direct.influence(probes, train).scores) <= 1e-4
        assert rel_diff(saved["self_influence"], direct.self_influence(train).scores) <= 1e-4
        rows = read_csv(root_of(tmp_path) / stage / "ranking_step000004.csv")
        assert len(rows) == 24
        assert all(r["label"] == str(int(train[int(r["index"])]["labels"])) for r in rows)
        (image,) = events.Images(f"{stage}/influence_logger/most_self_influential")
        assert image.width > 200
        (grid,) = events.Images(f"{stage}/influence_logger/proponents_opponents")
        assert grid.height > 100


def test_rgb_resnet_validate_and_test_in_a_new_trainer(tmp_path, tb_events) -> None:
    dm = UserDataModule(make=rgb_data, batch_size=16)
    recorder = TracInCheckpoint(parameters=["fc.*", "layer1.conv2.weight"])
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = make_trainer(
        tmp_path, callbacks=[recorder, ckpt], enable_checkpointing=True, max_epochs=2
    )
    trainer.fit(RGBResNet(), datamodule=dm)

    model = RGBResNet()
    cb = InfluenceLogger(stages=("validate", "test"), num_samples=2, k=2, top_n=5,
                         checkpoints=recorder.dirpath)  # fmt: skip
    fresh = make_trainer(tmp_path, callbacks=[cb])
    fresh_dm = UserDataModule(make=rgb_data, batch_size=16)
    ckpt_path = str(tmp_path / "ckpt" / "last.ckpt")
    fresh.validate(model, datamodule=fresh_dm, ckpt_path=ckpt_path)
    fresh.test(model, datamodule=fresh_dm, ckpt_path=ckpt_path)

    train = rgb_data(seed=1)  # the datamodule's training split, found by the callback
    events = tb_events(tmp_path / "run" / "version_1")
    for stage in ("validate", "test"):
        (saved_path,) = (root_of(tmp_path, 1) / stage).glob("influence_step*.pt")
        saved = torch.load(saved_path, weights_only=True)
        expected = TracIn(
            model, recorder.store, ce, parameters=["fc.*", "layer1.conv2.weight"],
            show_progress=False,
        ).self_influence(train)  # fmt: skip
        assert rel_diff(saved["self_influence"], expected.scores) <= 1e-4
        (image,) = events.Images(f"{stage}/influence_logger/most_self_influential")
        pixels = png(image).astype(int)
        # colour: the examples' red, green and blue channels differ (a grey grid would not)
        assert np.abs(pixels[..., 0] - pixels[..., 1]).max() > 100


@pytest.mark.parametrize(
    "adapter", [None, BatchAdapter(inputs=(0, 1), labels=2)], ids=["default", "two_inputs"]
)
def test_two_input_net(tmp_path, tb_events, adapter) -> None:
    train = two_input_data(n=32, seed=1)
    recorder = TracInCheckpoint()
    cb = InfluenceLogger(stages=("fit",), num_samples=2, k=2, top_n=4, adapter=adapter)
    model = TwoInputNet()
    trainer = make_trainer(tmp_path, callbacks=[recorder, cb], max_epochs=2, limit_train_batches=2)
    trainer.fit(model, loader(train), loader(two_input_data(n=16, seed=2)))
    saved = torch.load(root_of(tmp_path) / "fit" / "influence_step000004.pt", weights_only=True)
    direct = TracIn(model, recorder.store, ce, adapter=adapter, show_progress=False)
    assert rel_diff(saved["self_influence"], direct.self_influence(train).scores) <= 1e-4
    assert tb_events(tmp_path).Images("fit/influence_logger/proponents_opponents")


def _boring_loss(scores: Tensor, x: Tensor) -> Tensor:
    return (scores - x[:, :2]).pow(2).sum(1)


def test_boring_model_label_free(tmp_path, tb_events) -> None:
    recorder = TracInCheckpoint()
    cb = InfluenceLogger(
        stages=("fit",), num_samples=2, k=2, top_n=4, targets="inputs", loss_fn=_boring_loss
    )
    model = BoringModel()
    trainer = make_trainer(tmp_path, callbacks=[recorder, cb], max_epochs=2, limit_train_batches=2)
    trainer.fit(model)
    saved = torch.load(root_of(tmp_path) / "fit" / "influence_step000004.pt", weights_only=True)
    train = trainer.train_dataloader.dataset  # BoringModel draws new data on every call
    direct = TracIn(model, recorder.store, _boring_loss, targets="inputs", show_progress=False)
    assert rel_diff(saved["self_influence"], direct.self_influence(train).scores) <= 1e-4
    rows = read_csv(root_of(tmp_path) / "fit" / "ranking_step000004.csv")
    assert "label" not in rows[0]
    assert tb_events(tmp_path).Images("fit/influence_logger/most_self_influential")


def test_boring_model_without_labels_fails_before_training(tmp_path) -> None:
    model = BoringModel()
    trainer = make_trainer(tmp_path, callbacks=[TracInCheckpoint(), InfluenceLogger()])
    with pytest.raises(MisconfigurationException, match="targets='labels'\\) needs labels"):
        trainer.fit(model)
    assert trainer.global_step == 0


def test_test_in_new_trainer_without_training_data_names_train_data(tmp_path) -> None:
    recorder = TracInCheckpoint(dirpath=tmp_path / "store")
    model = TwoInputNet()
    make_trainer(tmp_path, callbacks=[recorder]).fit(model, loader(two_input_data()))
    cb = InfluenceLogger(checkpoints=tmp_path / "store")
    with pytest.raises(MisconfigurationException, match="train_data="):
        make_trainer(tmp_path, callbacks=[cb]).test(model, loader(two_input_data(seed=3)))
    # given explicitly, it works
    cb = InfluenceLogger(checkpoints=tmp_path / "store", train_data=two_input_data(), k=2)
    make_trainer(tmp_path, callbacks=[cb]).test(model, loader(two_input_data(seed=3)))
    assert list((root_of(tmp_path, 2) / "test").glob("ranking_step*.csv"))
