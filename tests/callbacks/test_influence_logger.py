"""InfluenceLogger: what reaches TensorBoard and files, equality with TracIn, and DDP sharding."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_xai.callbacks import InfluenceLogger, TracInCheckpoint
from lightning_xai.influence import CheckpointStore, TracIn
from tests.helpers import TinyClassifier, make_trainer, tiny_digits


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(k=0), "`k`"),
        (dict(top_n=-1), "`top_n`"),
        (dict(targets="x"), "`targets`"),
        (dict(stages=("predict",)), "stages"),
    ],
)
def test_bad_arguments_raise_early(kwargs, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        InfluenceLogger(**kwargs)


def test_needs_checkpoints(tmp_path) -> None:
    trainer = make_trainer(tmp_path, callbacks=[InfluenceLogger()])
    with pytest.raises(MisconfigurationException, match="add a TracInCheckpoint"):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())


def test_fit_and_test_report_everything(tmp_path, tb_events) -> None:
    dm = tiny_digits(flip_fraction=0.1)
    recorder = TracInCheckpoint()
    logger_cb = InfluenceLogger(num_samples=3, k=2, top_n=6)
    module = TinyClassifier(lr=0.03)
    trainer = make_trainer(
        tmp_path, callbacks=[recorder, logger_cb], max_epochs=2, limit_train_batches=3
    )
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm)

    train = dm.train_dataset
    n = len(train)
    expected = TracIn(module, recorder.store, ce, show_progress=False).self_influence(train).scores
    root = tmp_path / "run" / "version_0" / "xai" / "influence_logger"
    for stage, split in (("fit", "val"), ("test", "test")):
        rows = read_csv(root / stage / "ranking_step000006.csv")
        assert [int(r["rank"]) for r in rows] == list(range(n))
        assert sorted(int(r["index"]) for r in rows) == list(range(n))
        scores = torch.tensor([float(r["self_influence"]) for r in rows])
        assert bool((scores[:-1] >= scores[1:]).all())
        torch.testing.assert_close(
            scores, expected[[int(r["index"]) for r in rows]], rtol=1e-5, atol=1e-7
        )
        assert [int(r["label"]) for r in rows[:5]] == [
            int(train.y[int(r["index"])]) for r in rows[:5]
        ]
        assert {r["flipped"] for r in rows} == {"0", "1"}

        saved = torch.load(root / stage / "influence_step000006.pt", weights_only=True)
        probes = logger_cb.probe_indices[split]
        assert saved["probe_indices"].tolist() == probes and len(probes) == 3
        dataset = getattr(dm, f"{split}_dataset")
        probe_batch = (dataset.x[probes], dataset.y[probes])
        direct = (
            TracIn(module, recorder.store, ce, show_progress=False)
            .influence(probe_batch, train)
            .scores
        )
        torch.testing.assert_close(saved["influence"], direct, rtol=1e-5, atol=1e-7)

    events = tb_events(tmp_path)
    for stage in ("fit", "test"):
        (image,) = events.Images(f"{stage}/influence_logger/most_self_influential")
        assert image.width > 200 and image.height > 80
        (grid,) = events.Images(f"{stage}/influence_logger/proponents_opponents")
        assert grid.height > image.height  # one row per probe sample (3 rows)
        (histo,) = events.Histograms(f"{stage}/influence_logger/self_influence")
        assert histo.histogram_value.num == n
        recall10 = events.Scalars(
            f"{stage}/influence_logger/mislabel_recall_top10pct_higher_is_better"
        )[0].value
        recall20 = events.Scalars(
            f"{stage}/influence_logger/mislabel_recall_top20pct_higher_is_better"
        )[0].value
        flipped = train.flipped
        ranking = torch.argsort(expected, descending=True)
        assert recall20 == pytest.approx(
            float(flipped[ranking[: -(-n // 5)]].sum() / flipped.sum()), abs=1e-6
        )
        assert 0 <= recall10 <= recall20 <= 1


def test_last_epoch_recorded_whatever_the_callback_order(tmp_path) -> None:
    # every_n_epochs=5 never fires in 2 epochs: the last-epoch rule records epoch 1, and the
    # logger (listed first) still sees that checkpoint at the end of the last epoch
    recorder = TracInCheckpoint(every_n_epochs=5)
    logger_cb = InfluenceLogger(stages=("fit",), num_samples=2, k=2, top_n=4)
    module = TinyClassifier()
    trainer = make_trainer(tmp_path, callbacks=[logger_cb, recorder], max_epochs=2)
    dm = tiny_digits()
    trainer.fit(module, datamodule=dm)
    assert [(e.epoch, e.step) for e in recorder.store.entries] == [(1, 8)]
    root = tmp_path / "run" / "version_0" / "xai" / "influence_logger" / "fit"
    saved = torch.load(root / "influence_step000008.pt", weights_only=True)
    expected = TracIn(module, recorder.store, ce, show_progress=False).self_influence(
        dm.train_dataset
    )
    torch.testing.assert_close(saved["self_influence"], expected.scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(checkpoints="/nonexistent"), "`checkpoints='/nonexistent'` is not a directory"),
        (dict(loss_fn=lambda s, y: F.cross_entropy(s, y)), "one loss per sample, shape \\(2,\\)"),
        (dict(loss_fn="torch.nn.functional.nope"), "`loss_fn` must be a callable"),
        (dict(parameters="model.nope"), "parameters='model.nope'"),
    ],
)
def test_configuration_errors_before_any_training_step(tmp_path, kwargs, match) -> None:
    module = TinyClassifier()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    with pytest.raises(MisconfigurationException, match=match):
        callbacks = [TracInCheckpoint(), InfluenceLogger(**kwargs)]
        trainer = make_trainer(tmp_path, callbacks=callbacks)
        trainer.fit(module, datamodule=tiny_digits())
    if "loss_fn" not in kwargs or callable(kwargs["loss_fn"]):
        assert trainer.global_step == 0
    assert all(torch.equal(before[n], p) for n, p in module.named_parameters())


def test_empty_store_at_test_is_an_error(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    trainer = make_trainer(tmp_path, callbacks=[InfluenceLogger(checkpoints=tmp_path / "empty")])
    with pytest.raises(MisconfigurationException, match="holds no checkpoints"):
        trainer.test(TinyClassifier(), datamodule=tiny_digits())


@pytest.mark.ddp
def test_ddp_sharded_influence_equals_single_process(tmp_path) -> None:
    dm = tiny_digits(flip_fraction=0.1)
    callbacks = [
        TracInCheckpoint(),  # every rank reads the directory rank zero chose and writes
        InfluenceLogger(stages=("fit",), num_samples=2, k=2, top_n=4),
    ]
    trainer = make_trainer(
        tmp_path,
        callbacks=callbacks,
        strategy="ddp_spawn",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        limit_train_batches=2,
    )
    module = TinyClassifier()
    trainer.fit(module, datamodule=dm)

    store = CheckpointStore(tmp_path / "run" / "version_0" / "xai" / "tracin" / "checkpoints")
    assert [e.epoch for e in store.entries] == [0, 1]  # rank zero wrote each epoch once
    assert store.orphans() == []
    root = tmp_path / "run" / "version_0" / "xai" / "influence_logger" / "fit"
    (saved_path,) = root.glob("influence_step*.pt")
    saved = torch.load(saved_path, weights_only=True)
    dm.setup("fit")
    train = dm.train_dataset
    tracin = TracIn(module, store, ce, show_progress=False)  # single process, whole training set
    torch.testing.assert_close(
        saved["self_influence"], tracin.self_influence(train).scores, rtol=1e-5, atol=1e-7
    )
    probes = saved["probe_indices"].tolist()
    direct = tracin.influence((dm.val_dataset.x[probes], dm.val_dataset.y[probes]), train).scores
    torch.testing.assert_close(saved["influence"], direct, rtol=1e-5, atol=1e-7)
    assert len(read_csv(next(root.glob("ranking_step*.csv")))) == len(train)


def test_trak_method_logs_the_estimators_scores(tmp_path, tb_events) -> None:
    from lightning_xai.influence import TRAK

    dm = tiny_digits(flip_fraction=0.1)
    recorder = TracInCheckpoint()
    logger_cb = InfluenceLogger(num_samples=2, k=2, top_n=4, method="trak", projection_dim=64)
    module = TinyClassifier(lr=0.03)
    trainer = make_trainer(
        tmp_path, callbacks=[recorder, logger_cb], max_epochs=2, limit_train_batches=3
    )
    trainer.fit(module, datamodule=dm)
    train = dm.train_dataset
    trak = TRAK(module, recorder.store, ce, projection_dim=64, show_progress=False)
    expected = trak.self_influence(train).scores
    root = tmp_path / "run" / "version_0" / "xai" / "influence_logger"
    rows = read_csv(next((root / "fit").glob("ranking_step*.csv")))
    scores = torch.tensor([float(r["self_influence"]) for r in rows])
    torch.testing.assert_close(
        scores, expected[[int(r["index"]) for r in rows]], rtol=1e-4, atol=1e-6
    )
    assert (scores > 0).all() and (scores < 1).all()
    tags = tb_events(tmp_path / "run").tags()
    assert any("influence_logger/self_influence" in t for t in tags["histograms"])


def test_trak_method_refuses_label_free() -> None:
    with pytest.raises(MisconfigurationException, match="targets='labels'"):
        InfluenceLogger(method="trak", targets="inputs")
    with pytest.raises(MisconfigurationException, match="`method`"):
        InfluenceLogger(method="influence")
