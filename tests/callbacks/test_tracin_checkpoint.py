"""TracInCheckpoint: what is recorded, where, on resume and after a crash."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_xai.callbacks import TracInCheckpoint
from lightning_xai.influence import CheckpointStore, TracIn
from tests.helpers import TinyClassifier, make_trainer, tiny_digits


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(every_n_epochs=0), "every_n_epochs"),
        (dict(parameters=3), "parameters"),
        (dict(parameters=["a", 1]), "parameters"),
    ],
)
def test_bad_arguments_raise_early(kwargs, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        TracInCheckpoint(**kwargs)


def test_unknown_parameter_fails_in_setup(tmp_path) -> None:
    trainer = make_trainer(tmp_path, callbacks=[TracInCheckpoint(parameters="model.nope")])
    with pytest.raises(MisconfigurationException, match="matches no parameter"):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())


def test_records_every_n_epochs_under_log_dir(tmp_path) -> None:
    cb = TracInCheckpoint(every_n_epochs=2, parameters="last")
    module = TinyClassifier(lr=0.03)
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=4, limit_train_batches=2)
    trainer.fit(module, datamodule=tiny_digits())
    assert cb.dirpath == tmp_path / "run" / "version_0" / "xai" / "tracin" / "checkpoints"
    entries = cb.store.entries
    assert [(e.epoch, e.step) for e in entries] == [(1, 4), (3, 8)]
    assert all(
        e.params == ("model.classifier.3.weight", "model.classifier.3.bias") for e in entries
    )
    assert all(e.lr == pytest.approx(0.03) for e in entries)
    last = cb.store[-1]
    assert torch.equal(
        last.params["model.classifier.3.weight"], module.model.classifier[3].weight.detach()
    )
    assert cb.store.orphans() == []
    # the store reads back into TracIn with the same parameter selection
    x, y = trainer.datamodule.train_dataset.tensors
    scores = TracIn(module, cb.dirpath, ce, parameters="last", show_progress=False).self_influence(
        (x[:20], y[:20])
    )
    assert scores.scores.shape == (20,) and bool((scores.scores > 0).all())


def test_fast_dev_run_writes_nothing(tmp_path) -> None:
    cb = TracInCheckpoint(dirpath=tmp_path / "store")
    trainer = pl.Trainer(fast_dev_run=True, callbacks=[cb], logger=False, enable_progress_bar=False)
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert len(CheckpointStore(tmp_path / "store")) == 0


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resume_after_crash_has_no_duplicate_or_missing_epoch(tmp_path) -> None:
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    first = TracInCheckpoint()
    trainer = make_trainer(
        tmp_path,
        callbacks=[first, ckpt],
        enable_checkpointing=True,
        max_epochs=3,
        limit_train_batches=2,
    )
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    store = first.store
    assert [e.epoch for e in store.entries] == [0, 1, 2]
    stale_epoch2 = store[2].params["model.classifier.3.bias"].clone()
    # the "crash": debris of an interrupted write and of an unfinished temp file
    (store.dirpath / "epoch=0003-step=0000008.pt").write_bytes(b"\x80half")
    (store.dirpath / ".epoch=0003-step=0000008.pt.x1.tmp").write_bytes(b"")

    # resume from the end of epoch 1 in a new trainer, whose logger starts a new version
    resumed = TracInCheckpoint()
    trainer = make_trainer(tmp_path, callbacks=[resumed], max_epochs=4, limit_train_batches=2)
    module = TinyClassifier()
    trainer.fit(
        module, datamodule=tiny_digits(), ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=4.ckpt")
    )
    assert trainer.logger.version == 1
    assert resumed.dirpath == store.dirpath  # the store continues where the first run wrote
    assert [(e.epoch, e.step) for e in store.entries] == [(0, 2), (1, 4), (2, 6), (3, 8)]
    assert [c.epoch for c in store] == [0, 1, 2, 3]
    assert not torch.equal(store[2].params["model.classifier.3.bias"], stale_epoch2)  # re-recorded
    assert torch.equal(
        store[3].params["model.classifier.3.bias"], module.model.classifier[3].bias.detach()
    )
    assert resumed.state_dict() == {"dirpath": str(store.dirpath)}


def test_explicit_dirpath_wins_over_checkpoint_state(tmp_path) -> None:
    cb = TracInCheckpoint(dirpath=tmp_path / "mine")
    cb.load_state_dict({"dirpath": str(tmp_path / "theirs")})
    assert cb.dirpath == tmp_path / "mine"
    with pytest.raises(MisconfigurationException, match="no directory yet"):
        _ = TracInCheckpoint().store


def test_last_epoch_rule_with_max_steps_and_name(tmp_path) -> None:
    # every 3rd epoch never fires before max_steps=5 ends the fit mid-epoch 2 (2 batches/epoch):
    # the final weights are recorded anyway, once, under the callback's own name
    cb = TracInCheckpoint(every_n_epochs=3, name="tracin_last")
    module = TinyClassifier()
    trainer = make_trainer(
        tmp_path, callbacks=[cb], max_epochs=10, max_steps=5, limit_train_batches=2
    )
    trainer.fit(module, datamodule=tiny_digits())
    assert cb.dirpath == tmp_path / "run" / "version_0" / "xai" / "tracin_last" / "checkpoints"
    assert [e.step for e in cb.store.entries] == [5]
    assert torch.equal(
        cb.store[-1].params["model.classifier.3.bias"], module.model.classifier[3].bias.detach()
    )


def test_every_n_epochs_none_records_only_the_last_epoch(tmp_path) -> None:
    cb = TracInCheckpoint(every_n_epochs=None)
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=3, limit_train_batches=2)
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert [(e.epoch, e.step) for e in cb.store.entries] == [(2, 6)]
