"""The schedule layer: last-epoch rule, checks before the first step, training data anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_xai.callbacks.base import ScheduleCallback, XAICallback
from tests.helpers import make_trainer
from tests.user_models import RGBResNet, UserDataModule, loader, rgb_data


class Recorder(XAICallback):
    """Records every run (stage, epoch, step, split size, training-set size, module modes)."""

    def __init__(self, needs_train: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("num_samples", 4)
        super().__init__(**kwargs)
        self.needs_train = needs_train
        self.runs: list[tuple[str, int, int]] = []
        self.checked: list[str] = []
        self.train_sizes: list[int] = []
        self.modes: list[tuple[bool, bool]] = []

    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.checked.append(stage)
        if self.needs_train:
            self.train_dataset(trainer)
        self.check_batch(trainer, pl_module, stage)

    def explain(self, trainer: pl.Trainer, pl_module: Any, stage: str, batch: Any) -> None:
        self.runs.append((stage, trainer.current_epoch, trainer.global_step))
        self.modes.append((pl_module.training, pl_module.stem[1].training))
        if self.needs_train:
            self.train_sizes.append(len(self.train_dataset(trainer)))


class CountingResNet(RGBResNet):
    steps = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        CountingResNet.steps += 1
        return super().training_step(batch, batch_idx)


def test_last_fit_epoch_runs_whatever_every_n_epochs(tmp_path: Path) -> None:
    cb = Recorder(every_n_epochs=5)
    trainer = make_trainer(tmp_path, max_epochs=2, callbacks=[cb])
    trainer.fit(RGBResNet(), loader(rgb_data()), loader(rgb_data(seed=1)))
    assert cb.runs == [("fit", 1, 6)]  # 3 batches per epoch
    cb = Recorder(every_n_epochs=None)
    make_trainer(tmp_path, max_epochs=3, callbacks=[cb]).fit(
        RGBResNet(), loader(rgb_data()), loader(rgb_data(seed=1))
    )
    assert [r[1] for r in cb.runs] == [2]


def test_early_stopping_still_gets_a_final_run(tmp_path: Path) -> None:
    cb = Recorder(every_n_epochs=50)
    stop = EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
    trainer = make_trainer(tmp_path, max_epochs=20, callbacks=[cb, stop])
    trainer.fit(RGBResNet(), loader(rgb_data()), loader(rgb_data(seed=1)))
    assert trainer.current_epoch < 19
    assert len(cb.runs) == 1 and cb.runs[0][2] == trainer.global_step


def test_fit_without_validation_runs_on_training_probes(tmp_path: Path) -> None:
    cb = Recorder()
    trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[cb])
    trainer.fit(RGBResNet(), loader(rgb_data()))
    assert [r[1] for r in cb.runs] == [0, 1]
    assert "train" in cb.probe_indices


def test_fast_dev_run_neither_checks_nor_runs(tmp_path: Path) -> None:
    cb = Recorder()
    trainer = make_trainer(tmp_path, fast_dev_run=True, callbacks=[cb])
    trainer.fit(RGBResNet(), loader(rgb_data()), loader(rgb_data(seed=1)))
    assert cb.runs == [] and cb.checked == []


def test_eval_mode_restores_user_frozen_submodules(tmp_path: Path) -> None:
    model = RGBResNet()

    class Freeze(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
            pl_module.stem[1].eval()  # the user freezes the stem's batch norm

        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
            assert not pl_module.stem[1].training

    cb = Recorder(stages=("fit",))
    trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[Freeze(), cb])
    trainer.fit(model, loader(rgb_data()))
    assert cb.modes == [(False, False), (False, False)]


def test_training_set_found_at_test_after_fit_with_plain_loaders(tmp_path: Path) -> None:
    cb = Recorder(needs_train=True)
    trainer = make_trainer(tmp_path, max_epochs=1, callbacks=[cb])
    model = RGBResNet()
    trainer.fit(model, loader(rgb_data(n=40)), loader(rgb_data(seed=1)))
    trainer.test(model, loader(rgb_data(seed=2)))
    trainer.validate(model, loader(rgb_data(seed=3)))
    assert [r[0] for r in cb.runs] == ["fit", "test", "validate"]
    assert cb.train_sizes == [40, 40, 40]


def test_training_set_found_from_a_checkpoint_with_own_split_names(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_epochs=1, enable_checkpointing=True)
    trainer.fit(RGBResNet(), datamodule=UserDataModule(n=32))
    ckpt = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    for entry in ("validate", "test"):
        cb = Recorder(needs_train=True)
        fresh = make_trainer(tmp_path / entry, callbacks=[cb])
        getattr(fresh, entry)(RGBResNet(), datamodule=UserDataModule(n=32), ckpt_path=ckpt)
        assert [r[0] for r in cb.runs] == [entry] and cb.train_sizes == [32]


def test_explicit_train_data_wins(tmp_path: Path) -> None:
    cb = Recorder(needs_train=True)
    cb.train_data = loader(rgb_data(n=24))
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.test(RGBResNet(), loader(rgb_data(seed=2)))
    assert cb.train_sizes == [24]


def test_unreachable_training_data_fails_before_any_step(tmp_path: Path) -> None:
    CountingResNet.steps = 0
    cb = Recorder(needs_train=True)
    trainer = make_trainer(tmp_path, callbacks=[cb])
    with pytest.raises(MisconfigurationException, match="train_data="):
        trainer.test(CountingResNet(), loader(rgb_data(seed=2)))
    assert cb.runs == [] and CountingResNet.steps == 0


def test_probes_need_a_dataset_and_say_so_before_any_step(tmp_path: Path) -> None:
    class Batches:  # an iterable of batches, with no dataset behind it
        def __iter__(self) -> Any:
            yield tuple(t[:8] for t in rgb_data().tensors)

        def __len__(self) -> int:
            return 1

    batches = Batches()
    cb = Recorder()
    trainer = make_trainer(tmp_path, callbacks=[cb])
    with pytest.raises(MisconfigurationException, match="no validation data"):
        trainer.validate(RGBResNet(), batches)
    assert cb.runs == []


def test_every_schedule_callback_gets_the_duplicate_name_check(tmp_path: Path) -> None:
    class Plain(ScheduleCallback):
        def run(self, *args: Any) -> None:
            pass

    trainer = make_trainer(tmp_path, callbacks=[Plain(name="same"), Recorder(name="same")])
    with pytest.raises(MisconfigurationException, match="name='same'"):
        trainer.fit(RGBResNet(), loader(rgb_data()))


def test_every_n_epochs_none_is_accepted_and_zero_rejected() -> None:
    assert Recorder(every_n_epochs=None).every_n_epochs is None
    with pytest.raises(MisconfigurationException, match="every_n_epochs"):
        Recorder(every_n_epochs=0)


def test_eval_mode_of_none_and_nested() -> None:
    from lightning_xai.utilities import eval_mode

    net = nn.Sequential(nn.BatchNorm1d(2), nn.Sequential(nn.Dropout(), nn.Dropout().eval()))
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == [True, True, True, True, False]
    with eval_mode(None) as nothing:
        assert nothing is None


def test_one_console_line_per_stage_and_verbose_false_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Scoring(Recorder):
        def explain(self, trainer: pl.Trainer, pl_module: Any, stage: str, batch: Any) -> None:
            self.reporter(trainer).log_scalars({self.tag(stage, "score"): 0.5}, self.step(trainer))

    loud, quiet = Scoring(name="loud"), Scoring(name="quiet", verbose=False)
    trainer = make_trainer(tmp_path, max_epochs=1, callbacks=[loud, quiet])
    with caplog.at_level("INFO"):
        trainer.fit(RGBResNet(), loader(rgb_data()), loader(rgb_data(seed=1)))
        trainer.test(RGBResNet(), loader(rgb_data(seed=2)))
    lines = [r.getMessage() for r in caplog.records if "Scoring" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("Scoring 'loud' (fit): score=0.5; files in ")
    assert lines[1].startswith("Scoring 'loud' (test): score=0.5")
    assert lines[0].endswith(str(Path("xai") / "loud"))


def test_evaluating_a_checkpoint_labels_outputs_with_its_epoch_and_step(tmp_path: Path) -> None:
    class Stamps(Recorder):
        def explain(self, trainer: pl.Trainer, pl_module: Any, stage: str, batch: Any) -> None:
            self.runs.append((stage, self.epoch(trainer), self.step(trainer)))

    trainer = make_trainer(tmp_path, max_epochs=2, enable_checkpointing=True)
    trainer.fit(RGBResNet(), loader(rgb_data()), loader(rgb_data(seed=1)))
    ckpt = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    cb = Stamps()
    fresh = make_trainer(tmp_path / "eval", callbacks=[cb])
    fresh.test(RGBResNet(), loader(rgb_data(seed=2)), ckpt_path=ckpt)
    fresh.test(RGBResNet(), loader(rgb_data(seed=2)))  # no checkpoint: the trainer's own
    assert cb.runs == [("test", 1, 6), ("test", 0, 0)]
