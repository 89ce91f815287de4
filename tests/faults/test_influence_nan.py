"""NaN and inf injected into weights, inputs and learning rates: never a silently recorded or
returned NaN; a clear error naming where, or (callbacks) one warning and a skip, or an error
with ``strict=True``."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from lightning_xai.callbacks import InfluenceLogger, TracInCheckpoint
from lightning_xai.influence import Checkpoint, CheckpointStore, TracIn, per_sample_grads
from lightning_xai.influence.errors import NonFiniteError
from tests.helpers import TinyClassifier, make_trainer, tiny_digits

NAN, INF = float("nan"), float("inf")


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 3), torch.arange(n) % 2


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_weights_non_finite_never_recorded_nor_used(tmp_path, bad) -> None:
    model = net()
    with torch.no_grad():
        model[2].weight[1, 3] = bad
    ckpt = Checkpoint.from_module(model, 0.1, epoch=4, step=40)
    store = CheckpointStore(tmp_path)
    with pytest.raises(NonFiniteError, match=r"epoch 4, step 40.*'2\.weight'"):
        store.save(ckpt)
    assert list(tmp_path.iterdir()) == []  # nothing written
    with pytest.raises(NonFiniteError, match=r"checkpoint #0 \(epoch 4, step 40\).*2\.weight"):
        TracIn(net(), [ckpt], ce, show_progress=False).self_influence(data())
    # a file with NaN values written behind the store's back is refused, naming the file
    good = Checkpoint.from_module(net(), 0.1, epoch=0, step=1)
    path = store.save(good)
    payload = torch.load(path, weights_only=True)
    payload["params"]["0.bias"][0] = bad
    torch.save(payload, tmp_path / "raw.pt")
    with pytest.raises(NonFiniteError, match=r"raw\.pt.*0\.bias"):
        TracIn(net(), [tmp_path / "raw.pt"], ce, show_progress=False).self_influence(data())


@pytest.mark.parametrize("where", ["x", "soft labels"])
def test_inputs_non_finite_name_the_first_bad_row(where) -> None:
    x, y = data(10)
    model = net()
    if where == "x":
        x[7, 0], x[9, 2] = NAN, INF
        batch: tuple = (x, y)
        target_ok = ce
    else:
        soft = F.one_hot(y, 2).float()
        soft[7, 1] = NAN
        batch = (x, soft)
        target_ok = lambda out, t: -(t * out.log_softmax(1)).sum(1)  # noqa: E731
    tracin = TracIn(model, [Checkpoint.from_module(model, 0.1)], target_ok, batch_size=3)
    tracin.show_progress = False
    with pytest.raises(NonFiniteError, match=r"`data` row 7 holds NaN or inf") as info:
        tracin.self_influence(batch)
    assert "among rows 6-8: [7]" in str(info.value)  # chunks of 3: the first bad chunk
    with pytest.raises(NonFiniteError, match=r"`train_data` row 7"):
        tracin.influence(data(2), batch)
    with pytest.raises(NonFiniteError, match=r"`batch` row 7"):
        per_sample_grads(model, batch, target_ok)


def test_gradients_non_finite_name_checkpoint_and_rows() -> None:
    model = net()
    x, y = data(6)

    # finite inputs and weights, but a loss that is inf for rows 1 and 4: log(0)
    def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p = out.softmax(1).gather(1, t[:, None])[:, 0]
        mask = torch.zeros_like(p)
        mask[[1, 4]] = 1.0
        return -torch.log(p * (1 - mask))

    tracin = TracIn(model, [Checkpoint.from_module(model, 0.1, epoch=2, step=9)], loss)
    tracin.show_progress = False
    with pytest.raises(NonFiniteError, match=r"checkpoint #0 \(epoch 2, step 9\).*rows \[1, 4\]"):
        tracin.self_influence((x, y))


class SetLearningRate(pl.Callback):
    """Set every optimizer's learning rate to ``value`` at the end of training epoch ``epoch``
    (before TracInCheckpoint records it); 0.02 while training."""

    def __init__(self, epoch: int, value: float) -> None:
        self.epoch, self.value = epoch, value

    def _set(self, trainer: pl.Trainer, value: float) -> None:
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = value

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self._set(trainer, 0.02)  # training itself stays finite

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.current_epoch == self.epoch:
            self._set(trainer, self.value)


@pytest.mark.parametrize("bad", [NAN, INF])
def test_non_finite_learning_rate_is_skipped_with_one_warning(tmp_path, bad) -> None:
    recorder = TracInCheckpoint(parameters="last")
    trainer = make_trainer(
        tmp_path,
        callbacks=[SetLearningRate(1, bad), recorder],
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=0,
    )
    with pytest.warns(
        UserWarning, match=r"fit epoch 1, step 4: the learning rate .* not finite"
    ) as rec:
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert sum("not finite" in str(w.message) for w in rec) == 1
    store = recorder.store
    assert [e.epoch for e in store.entries] == [0, 2]  # never a recorded NaN
    assert all(e.lr == pytest.approx(0.02) or e.epoch == 0 for e in store.entries)
    assert [(s["epoch"], s["step"]) for s in store.skipped] == [(1, 4)]
    assert "learning rate" in store.skipped[0]["reason"]
    # the influence logger says which epochs the store lacks
    logger_cb = InfluenceLogger(stages=("validate",), checkpoints=store.dirpath, num_samples=2)
    trainer = make_trainer(tmp_path / "v", callbacks=[logger_cb])
    with pytest.warns(UserWarning, match=r"lacks the checkpoints of epochs \[1\]"):
        trainer.validate(TinyClassifier(), datamodule=tiny_digits())


def test_non_finite_learning_rate_strict_raises(tmp_path) -> None:
    recorder = TracInCheckpoint(strict=True, parameters="last")
    trainer = make_trainer(
        tmp_path, callbacks=[SetLearningRate(0, NAN), recorder], limit_val_batches=0
    )
    with pytest.raises(
        NonFiniteError, match=r"fit epoch 0, step 4: the learning rate.*strict=True"
    ):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert recorder.store.entries == []


def _train_data_with_nan(row: int) -> TensorDataset:
    dm = tiny_digits()
    dm.setup("fit")
    x, y = dm.train_dataset.tensors
    x, y = x[:40].clone(), y[:40].clone()
    x[row, 0, 2, 3] = NAN
    return TensorDataset(x, y)


def test_logger_with_nan_training_data_warns_once_and_skips(tmp_path) -> None:
    logger_cb = InfluenceLogger(
        stages=("fit",),
        every_n_epochs=1,
        num_samples=2,
        top_n=4,
        train_data=_train_data_with_nan(13),
    )
    trainer = make_trainer(
        tmp_path, callbacks=[TracInCheckpoint(), logger_cb], max_epochs=2, limit_train_batches=2
    )
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())  # no crash inside any logger
    ours = [str(w.message) for w in rec if "influence scores were not computed" in str(w.message)]
    assert len(ours) == 1, ours  # once, although two epochs met it
    assert "fit epoch 0" in ours[0] and "`data` row 13 holds NaN or inf" in ours[0]
    folder = tmp_path / "run" / "version_0" / "xai" / "influence_logger"
    assert not list(folder.rglob("ranking_*.csv"))  # nothing half-computed was written


def test_logger_with_nan_training_data_strict_raises(tmp_path) -> None:
    logger_cb = InfluenceLogger(
        stages=("fit",), num_samples=2, top_n=4, strict=True, train_data=_train_data_with_nan(5)
    )
    trainer = make_trainer(tmp_path, callbacks=[TracInCheckpoint(), logger_cb])
    with pytest.raises(NonFiniteError, match=r"fit epoch 0: .*`data` row 5.*strict=True"):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())
