"""ExampleImportanceLogger through a real Trainer: images and scores in TensorBoard, files, resume."""

from __future__ import annotations

import csv

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, TensorDataset

from lightning_xai.callbacks import ExampleImportanceLogger, TracInCheckpoint
from lightning_xai.modules import AutoEncoder
from tests.helpers import TinyClassifier, make_trainer, tiny_digits


def _tag(stage: str, key: str) -> str:
    return f"{stage}/example_importance_logger/{key}"


@pytest.mark.parametrize("method", ["simplex", "knn", "tracin"])
def test_logs_grids_and_consistency_in_fit_validate_and_test(tmp_path, tb_events, method) -> None:
    cb = ExampleImportanceLogger(
        method=method, k=3, num_samples=4, corpus_size=48, feature_method="saliency"
    )
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=2)
    model, dm = AutoEncoder(latent_dim=6), tiny_digits()
    trainer.fit(model, dm)
    trainer.validate(model, dm, verbose=False)
    trainer.test(model, dm, verbose=False)

    events = tb_events(tmp_path)
    for stage in ("fit", "validate", "test"):
        images = events.Images(_tag(stage, "examples"))
        assert images and images[-1].width > 100 and images[-1].height > 100
        agreement = events.Scalars(_tag(stage, "example_consistency_top10_higher_is_better"))[-1].value
        assert 0.0 <= agreement <= 1.0
        ratio = events.Scalars(_tag(stage, "feature_consistency/ratio"))[-1].value
        top = events.Scalars(_tag(stage, "feature_consistency/top_shift"))[-1].value
        rand = events.Scalars(_tag(stage, "feature_consistency/random_shift"))[-1].value
        assert ratio == pytest.approx(top / rand, rel=1e-4)
    assert len(events.Images(_tag("fit", "examples"))) == 2  # one per epoch

    root = tmp_path / "run" / "version_0" / "xai" / "example_importance_logger"
    with next((root / "test").glob("top_examples_step*.csv")).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 3 and {r["rank"] for r in rows} == {"0", "1", "2"}
    assert {int(r["train_index"]) for r in rows} <= set(cb.corpus_indices)
    train_y = dm.train_dataset.y
    assert all(int(r["label"]) == int(train_y[int(r["train_index"])]) for r in rows)


def test_knn_rows_are_the_nearest_corpus_examples(tmp_path) -> None:
    cb = ExampleImportanceLogger(
        method="knn", k=4, num_samples=3, corpus_size=32, feature_method=None, stages=("test",)
    )
    trainer = make_trainer(tmp_path, callbacks=[cb])
    model, dm = AutoEncoder(latent_dim=5), tiny_digits()
    trainer.test(model, dm, verbose=False)
    dm.setup()
    corpus = dm.train_dataset.x[cb.corpus_indices]
    probes = dm.test_dataset.x[cb.probe_indices["test"]]
    with torch.no_grad():
        distances = torch.cdist(model.encode(probes), model.encode(corpus))
    expected = [
        [cb.corpus_indices[j] for j in row] for row in distances.argsort(dim=1)[:, :4].tolist()
    ]
    path = next((tmp_path / "run").rglob("top_examples_step*.csv"))
    with path.open() as f:
        rows = list(csv.DictReader(f))
    got = [[int(r["train_index"]) for r in rows if int(r["probe"]) == p] for p in range(3)]
    assert got == expected
    assert [float(r["d"]) for r in rows[:4]] == pytest.approx(
        distances[0].sort().values[:4].tolist(), rel=1e-4
    )


def test_tracin_uses_recorded_checkpoints(tmp_path, tb_events) -> None:
    cb = ExampleImportanceLogger(
        method="tracin", k=2, num_samples=2, corpus_size=16, feature_method=None, stages=("test",)
    )
    recorder = TracInCheckpoint(dirpath=tmp_path / "ckpts")
    trainer = make_trainer(tmp_path, callbacks=[recorder, cb], max_epochs=2)
    model, dm = AutoEncoder(latent_dim=4), tiny_digits()
    trainer.fit(model, dm)
    assert len(recorder.store) == 2
    trainer.test(model, dm, verbose=False)
    assert tb_events(tmp_path).Images(_tag("test", "examples"))


def test_unlabelled_data_logs_grids_without_example_consistency(tmp_path, tb_events) -> None:
    x = torch.rand(40, 1, 8, 8)
    loader = DataLoader(TensorDataset(x), batch_size=8)
    cb = ExampleImportanceLogger(method="simplex", k=2, num_samples=3, feature_method="saliency")
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=1)
    trainer.fit(AutoEncoder(latent_dim=4), train_dataloaders=loader, val_dataloaders=loader)
    events = tb_events(tmp_path)
    assert events.Images(_tag("fit", "examples"))
    assert events.Scalars(_tag("fit", "feature_consistency/ratio"))
    assert not any("example_consistency" in t for t in events.Tags()["scalars"])


def test_corpus_and_probes_survive_a_state_dict_round_trip() -> None:
    cb = ExampleImportanceLogger(seed=3)
    cb.corpus_indices, cb.probe_indices = [1, 4, 9], {"val": [0, 2]}
    restored = ExampleImportanceLogger(seed=3)
    restored.load_state_dict(cb.state_dict())
    assert restored.corpus_indices == [1, 4, 9] and restored.probe_indices == {"val": [0, 2]}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="influence"), "method"),
        (dict(k=0), "`k`"),
        (dict(corpus_size=0), "corpus_size"),
        (dict(consistency_k=-1), "consistency_k"),
        (dict(method_kwargs={"corpus_top_k": 0}), "corpus_top_k"),
        (dict(method="knn", method_kwargs={"metric": "l1"}), "metric"),
        (dict(method="simplex", checkpoints="somewhere"), "checkpoints"),
        (dict(feature_method=3), "feature_method"),
    ],
)
def test_bad_arguments_raise_early(kwargs, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        ExampleImportanceLogger(**kwargs)


def test_a_module_without_encode_is_refused_at_setup(tmp_path) -> None:
    trainer = make_trainer(tmp_path, callbacks=[ExampleImportanceLogger()])
    with pytest.raises(MisconfigurationException, match="encode"):
        trainer.fit(TinyClassifier(), tiny_digits())
