"""XAICallback: stages, every_n_epochs, skip predicate, fixed probes, ranks and resume."""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lightning_xai.callbacks import XAICallback
from tests.helpers import TinyClassifier, make_trainer, tiny_digits


class Recorder(XAICallback):
    """Records every call and logs the probe batch's mean prediction confidence."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls: list[dict] = []

    def explain(self, trainer, pl_module, stage, batch) -> None:
        x, y = batch
        assert not pl_module.training
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(pl_module(x).logsumexp(-1).sum(), x)
        self.calls.append(
            {
                "stage": stage,
                "epoch": trainer.current_epoch,
                "x": x.detach().clone(),
                "y": y.clone(),
                "grad": grad,
            }
        )
        self.reporter(trainer).log_scalars(
            {self.tag(stage, "grad_norm"): grad.norm()}, self.step(trainer)
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(stages=("fit", "predict")), "stages"),
        (dict(stages=()), "stages"),
        (dict(every_n_epochs=0), "every_n_epochs"),
        (dict(num_samples=-1), "num_samples"),
    ],
)
def test_bad_arguments_raise_early(kwargs, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        Recorder(**kwargs)


def test_runs_in_each_stage_on_fixed_probes_and_skips_sanity_check(tmp_path, tb_events) -> None:
    cb = Recorder(num_samples=5, every_n_epochs=2, seed=3)
    dm = tiny_digits()
    trainer = make_trainer(tmp_path, callbacks=[cb], max_epochs=4, num_sanity_val_steps=2)
    module = TinyClassifier()
    trainer.fit(module, datamodule=dm)
    assert [(c["stage"], c["epoch"]) for c in cb.calls] == [("fit", 1), ("fit", 3)]
    trainer.validate(module, datamodule=dm)
    trainer.test(module, datamodule=dm)
    assert [c["stage"] for c in cb.calls][2:] == ["validate", "test"]

    val_idx = cb.probe_indices["val"]
    assert len(val_idx) == 5 and len(set(val_idx)) == 5
    expected = torch.stack([dm.val_dataset[i][0] for i in val_idx])
    for call in cb.calls[:3]:  # same val probes every time
        assert torch.equal(call["x"], expected)
    assert torch.equal(
        cb.calls[3]["x"], torch.stack([dm.test_dataset[i][0] for i in cb.probe_indices["test"]])
    )
    # Same seed -> same probes; another seed -> others.
    assert (
        Recorder(num_samples=5, seed=3).probe_batch(trainer, module, "val")[1].tolist()
        == cb.calls[0]["y"].tolist()
    )
    assert Recorder(num_samples=5, seed=4).probe_batch(trainer, module, "val")[0].shape == (
        5,
        1,
        8,
        8,
    )

    events = tb_events(tmp_path)
    assert len(events.Scalars("fit/recorder/grad_norm")) == 2
    assert len(events.Scalars("validate/recorder/grad_norm")) == 1
    assert len(events.Scalars("test/recorder/grad_norm")) == 1


def test_stage_selection_and_fast_dev_run(tmp_path) -> None:
    cb = Recorder(stages=("test",))
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert cb.calls == []
    trainer.test(trainer.lightning_module, datamodule=tiny_digits())
    assert [c["stage"] for c in cb.calls] == ["test"]

    cb = Recorder()
    trainer = pl.Trainer(fast_dev_run=True, callbacks=[cb], logger=False, enable_progress_bar=False)
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    trainer.test(trainer.lightning_module, datamodule=tiny_digits())
    assert cb.calls == []


def test_probe_indices_survive_resume(tmp_path) -> None:
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    cb = Recorder(num_samples=4, seed=11)
    trainer = make_trainer(tmp_path, callbacks=[cb, ckpt], enable_checkpointing=True, max_epochs=1)
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    saved = dict(cb.probe_indices)

    resumed = Recorder(num_samples=4, seed=11)
    resumed.probe_indices = {"val": [0, 1, 2, 3]}  # overwritten by the checkpoint
    trainer = make_trainer(tmp_path, callbacks=[resumed], max_epochs=2)
    trainer.fit(
        TinyClassifier(), datamodule=tiny_digits(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
    )
    assert resumed.probe_indices == saved
    assert [c["epoch"] for c in resumed.calls] == [1]
    assert resumed.state_dict() == {"probe_indices": saved}


class FileRecorder(Recorder):
    """Under ddp_spawn the callback object lives in the workers: record through files."""

    def explain(self, trainer, pl_module, stage, batch) -> None:
        super().explain(trainer, pl_module, stage, batch)
        self.reporter(trainer).save(
            f"rank{trainer.global_rank}_{stage}_{trainer.current_epoch}.txt", "ran"
        )


@pytest.mark.ddp
def test_ddp_runs_on_rank_zero_only_and_does_not_hang(tmp_path) -> None:
    cb = FileRecorder(num_samples=4)
    trainer = make_trainer(
        tmp_path, callbacks=[cb], strategy="ddp_spawn", accelerator="cpu", devices=2, max_epochs=2
    )
    trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    root = tmp_path / "run" / "version_0" / "xai" / "file_recorder"
    assert sorted(p.name for p in root.glob("*.txt")) == ["rank0_fit_0.txt", "rank0_fit_1.txt"]
    with (root / "scalars.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2  # one row per epoch, not one per rank


def test_name_sets_folder_tags_and_must_be_unique(tmp_path, tb_events) -> None:
    with pytest.raises(MisconfigurationException, match="`name` must be a non-empty string"):
        Recorder(name="a/b")
    first, second = Recorder(stages=("validate",)), Recorder(stages=("validate",), name="second")
    assert (first.name, second.name) == ("recorder", "second")
    assert first.state_key != second.state_key
    trainer = make_trainer(tmp_path, callbacks=[first, second])
    trainer.validate(TinyClassifier(), datamodule=tiny_digits())
    events = tb_events(tmp_path)
    assert events.Scalars("validate/recorder/grad_norm") and events.Scalars(
        "validate/second/grad_norm"
    )
    assert (tmp_path / "run" / "version_0" / "xai" / "second" / "scalars.csv").exists()
    trainer = make_trainer(tmp_path, callbacks=[Recorder(), Recorder(seed=1)])  # same name
    with pytest.raises(MisconfigurationException, match="share `name='recorder'`"):
        trainer.validate(TinyClassifier(), datamodule=tiny_digits())
