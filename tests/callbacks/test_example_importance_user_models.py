"""ExampleImportanceLogger on users' models and data: RGB, 1-D signals, tabular rows and token
ids; plain loaders, fit then test, a checkpoint evaluated with a datamodule of its own names,
and the configuration errors raised before the first training step."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.data import DataLoader

from lightning_xai.attribution.config import AttributionConfig
from lightning_xai.callbacks import ExampleImportanceLogger
from lightning_xai.modules import AutoEncoder
from tests.helpers import make_trainer
from tests.user_models import (
    DictDataset,
    HFTextClassifier,
    loader,
    rgb_data,
    signal_data,
    tabular_data,
    token_data,
)

SHAPES = {"rgb": (3, 12, 10), "signal": (2, 24), "tabular": (5,)}
MAKERS = {"rgb": rgb_data, "signal": signal_data, "tabular": tabular_data}


class FlatAutoEncoder(AutoEncoder):
    """A user's autoencoder for inputs of any shape, counting its training steps."""

    steps = 0

    def __init__(
        self,
        shape: tuple[int, ...] = (5,),
        latent_dim: int = 3,
        sigmoid: bool = False,
        lr: float = 1e-2,
        **kwargs: Any,
    ) -> None:
        width = int(torch.tensor(shape).prod())
        super().__init__(
            encoder=nn.Sequential(nn.Flatten(), nn.Linear(width, latent_dim)),
            decoder=nn.Sequential(nn.Linear(latent_dim, width), nn.Unflatten(1, tuple(shape))),
            latent_dim=latent_dim,
            sigmoid=sigmoid,
            lr=lr,
            **kwargs,
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        type(self).steps += 1
        return super().training_step(batch, batch_idx)


class PictureDataModule(pl.LightningDataModule):
    """Splits under the user's own attribute names (no ``*_dataset``)."""

    def __init__(self) -> None:
        super().__init__()

    def setup(self, stage: str) -> None:
        self.pics_fit = rgb_data(n=40, seed=1)
        self.pics_holdout = rgb_data(n=16, seed=2)
        self.pics_final = rgb_data(n=16, seed=3)

    def train_dataloader(self) -> DataLoader:
        return loader(self.pics_fit, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return loader(self.pics_holdout)

    def test_dataloader(self) -> DataLoader:
        return loader(self.pics_final)


def _tag(stage: str, key: str, name: str = "example_importance_logger") -> str:
    return f"{stage}/{name}/{key}"


def _rows(trainer: pl.Trainer, stage: str, name: str = "example_importance_logger") -> list:
    path = next((Path(trainer.log_dir) / "xai" / name / stage).glob("top_examples_step*.csv"))
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "kind, method", [("rgb", "knn"), ("signal", "simplex"), ("tabular", "tracin")]
)
def test_fit_then_test_with_plain_loaders(tmp_path, tb_events, kind, method) -> None:
    torch.manual_seed(0)
    train, val, test = (MAKERS[kind](n=n, seed=s) for n, s in ((40, 1), (16, 2), (16, 3)))
    cb = ExampleImportanceLogger(
        method=method, k=3, num_samples=4, consistency_k=3, feature_method="saliency"
    )
    model = FlatAutoEncoder(SHAPES[kind])
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=2)
    trainer.fit(model, loader(train, shuffle=True), loader(val))
    trainer.test(model, loader(test), verbose=False)  # the corpus: the last fit's training set

    events = tb_events(tmp_path)
    assert len(events.Images(_tag("fit", "examples"))) == 2
    (image,) = events.Images(_tag("test", "examples"))
    assert image.width > 100 and image.height > 100
    for stage in ("fit", "test"):
        assert 0.0 <= events.Scalars(_tag(stage, "example_consistency_top3_higher_is_better"))[-1].value <= 1.0
        assert events.Scalars(_tag(stage, "feature_consistency/ratio"))[-1].value > 0.0
    rows = _rows(trainer, "test")
    assert len(rows) == 4 * 3 and {int(r["train_index"]) for r in rows} <= set(cb.corpus_indices)
    labels = train.tensors[1]
    assert all(int(r["label"]) == int(labels[int(r["train_index"])]) for r in rows)
    if method == "knn":  # the logged neighbours are the brute-force k-NN on `encode`
        x_train, x_test = train.tensors[0], test.tensors[0][cb.probe_indices["test"]]
        with torch.no_grad():
            d = torch.cdist(model.encode(x_test), model.encode(x_train[cb.corpus_indices]))
        expected = [[cb.corpus_indices[j] for j in row[:3]] for row in d.argsort(1).tolist()]
        got = [[int(r["train_index"]) for r in rows if int(r["probe"]) == p] for p in range(4)]
        assert got == expected


def test_checkpoint_validated_and_tested_with_its_own_datamodule(tmp_path, tb_events) -> None:
    torch.manual_seed(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = make_trainer(tmp_path / "fit", callbacks=[ckpt], enable_checkpointing=True)
    first.fit(FlatAutoEncoder(SHAPES["rgb"]), datamodule=PictureDataModule())

    model = FlatAutoEncoder.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    cb = ExampleImportanceLogger(
        method="simplex",
        k=2,
        num_samples=3,
        consistency_k=2,
        feature_method=AttributionConfig("integrated_gradients", method_kwargs={"n_steps": 8}),
        stages=("validate", "test"),
    )
    trainer = make_trainer(tmp_path / "eval", callbacks=[cb])
    dm = PictureDataModule()
    trainer.validate(model, datamodule=dm, verbose=False)
    trainer.test(model, datamodule=dm, verbose=False)
    events = tb_events(tmp_path / "eval")
    for stage in ("validate", "test"):
        assert events.Images(_tag(stage, "examples"))
        assert events.Scalars(_tag(stage, "feature_consistency/top_shift"))
        rows = _rows(trainer, stage)
        labels = dm.pics_fit.tensors[1]
        assert all(int(r["label"]) == int(labels[int(r["train_index"])]) for r in rows)


def test_token_ids_through_a_submodule_encoder(tmp_path, tb_events) -> None:
    rows = DictDataset(token_data(n=48))
    cb = ExampleImportanceLogger(
        method="knn", k=2, num_samples=3, consistency_k=2, feature_method=None, encoder="bert.bert"
    )
    model = HFTextClassifier()
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.fit(model, loader(rows, shuffle=True), loader(rows))
    trainer.test(model, loader(DictDataset(token_data(n=16, seed=3))), verbose=False)
    events = tb_events(tmp_path)
    assert events.Images(_tag("test", "examples"))
    assert events.Scalars(_tag("fit", "example_consistency_top2_higher_is_better"))
    got = _rows(trainer, "test")
    assert len(got) == 3 * 2 and {int(r["train_index"]) for r in got} <= set(cb.corpus_indices)


def test_validate_without_training_data_names_train_data(tmp_path) -> None:
    model = FlatAutoEncoder()
    val = loader(tabular_data(n=16, seed=2))
    cb = ExampleImportanceLogger(method="knn", k=2, stages=("validate",))
    with pytest.raises(MisconfigurationException, match="train_data="):
        make_trainer(tmp_path, callbacks=[cb]).validate(model, val, verbose=False)
    cb = ExampleImportanceLogger(
        method="knn", k=2, num_samples=2, stages=("validate",), train_data=tabular_data(n=20)
    )
    make_trainer(tmp_path, callbacks=[cb]).validate(model, val, verbose=False)
    assert cb.corpus_indices is not None and len(cb.corpus_indices) == 20


@pytest.mark.parametrize(
    "make_model, data, kwargs, match",
    [
        (
            lambda: FlatAutoEncoder(),
            lambda: tabular_data(n=16),
            {"encoder": "backbone"},
            "encoder='backbone'",
        ),
        (
            lambda: FlatAutoEncoder(),
            lambda: tabular_data(n=16),
            {"encoder": lambda x: x[:, :0, None].sum(-1).mean()},
            "failed on 2 real probe samples",
        ),
        (
            lambda: FlatAutoEncoder(),
            lambda: tabular_data(n=16),
            {"feature_k": 6},
            "feature_k=6",
        ),
        (
            lambda: HFTextClassifier(),
            lambda: DictDataset(token_data(n=16)),
            {"encoder": "bert.bert"},  # default feature_method on token ids
            "feature_method=None",
        ),
        (
            lambda: HFTextClassifier(),
            lambda: DictDataset(token_data(n=16)),
            {"feature_method": None},  # no `encode`, no encoder=
            "encoder=",
        ),
    ],
)
def test_configuration_errors_come_before_the_first_training_step(
    tmp_path, make_model, data, kwargs, match
) -> None:
    FlatAutoEncoder.steps = 0
    model = make_model()
    trainer = make_trainer(tmp_path, callbacks=[ExampleImportanceLogger(k=2, **kwargs)])
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(model, loader(data()), loader(data()))
    assert trainer.global_step == 0 and FlatAutoEncoder.steps == 0


def test_unlabelled_tensor_batches(tmp_path, tb_events) -> None:
    x = torch.rand(24, 2, 24)
    cb = ExampleImportanceLogger(method="knn", k=2, num_samples=2, feature_method="saliency")
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.fit(FlatAutoEncoder((2, 24)), DataLoader(x, batch_size=8), DataLoader(x[:8]))
    events = tb_events(tmp_path)
    assert events.Images(_tag("fit", "examples"))
    assert not any("example_consistency" in t for t in events.Tags()["scalars"])


class Sentences(torch.utils.data.Dataset):
    """Token rows of different lengths, as a tokenizer without padding returns them."""

    def __init__(self, n: int, seed: int) -> None:
        columns = token_data(n=n, seed=seed)
        self.rows = [
            {"input_ids": ids[mask.bool()], "labels": label}
            for ids, mask, label in zip(
                columns["input_ids"], columns["attention_mask"], columns["labels"]
            )
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def pad(rows: list[dict]) -> dict[str, torch.Tensor]:
    """A padding collate_fn (as HuggingFace's DataCollatorWithPadding)."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = r["input_ids"]
        mask[i, : len(r["input_ids"])] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.stack([r["labels"] for r in rows]),
    }


def test_the_loaders_collate_fn_reads_variable_length_rows(tmp_path, tb_events) -> None:
    train, val = Sentences(40, seed=1), Sentences(12, seed=2)
    cb = ExampleImportanceLogger(
        method="knn", k=2, num_samples=3, consistency_k=2, feature_method=None, encoder="bert.bert"
    )
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.fit(
        HFTextClassifier(),
        DataLoader(train, batch_size=8, collate_fn=pad),
        DataLoader(val, batch_size=8, collate_fn=pad),
    )
    assert tb_events(tmp_path).Images(_tag("fit", "examples"))
    assert len(cb.corpus_indices) == 40


def test_an_empty_tracin_store_is_refused_before_testing(tmp_path) -> None:
    cb = ExampleImportanceLogger(
        method="tracin",
        checkpoints=tmp_path / "nothing",
        stages=("test",),
        feature_method=None,
        train_data=tabular_data(n=8),
    )
    with pytest.raises(MisconfigurationException, match="holds no TracIn checkpoints"):
        make_trainer(tmp_path, callbacks=[cb]).test(
            FlatAutoEncoder(), loader(tabular_data(n=8)), verbose=False
        )
