"""NaN injected into the weights or the probe inputs in the middle of a fit: the
AttributionLogger warns once (naming the stage, epoch and quantity), skips the picture and the
scalars, never crashes inside a logger; ``strict=True`` raises instead."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import pytorch_lightning as pl
import torch

from lightning_xai.attribution import AttributionWarning
from lightning_xai.callbacks import AttributionLogger
from lightning_xai.utilities.report import NonFiniteWarning
from tests.helpers import TinyClassifier, make_trainer, tiny_digits

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers")


class PoisonWeights(pl.Callback):
    """Set one weight of the first convolution to NaN after the first training epoch."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            with torch.no_grad():
                pl_module.model.features[0].weight[0, 0, 1, 1] = math.nan


class PoisonProbe(pl.Callback):
    """Set a pixel of one probe sample of the validation set to NaN after the first epoch."""

    def __init__(self, logger: AttributionLogger) -> None:
        self.logger = logger

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            index = self.logger.probe_indices["val"][2]
            trainer.datamodule.val_dataset.x[index, 0, 3, 3] = math.nan


def _fit(tmp_path, cb: AttributionLogger, poison: pl.Callback) -> list[warnings.WarningMessage]:
    trainer = make_trainer(tmp_path, callbacks=[cb, poison], max_epochs=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert trainer.current_epoch == 3  # no crash: the fit ran to its end
    return [w for w in caught if issubclass(w.category, NonFiniteWarning | AttributionWarning)]


@pytest.mark.parametrize(
    ("poison", "quantity", "detail"),
    [
        ("weights", "the attributions", r"'model\.features\.0\.weight' is not finite"),
        ("inputs", "the probe inputs", r"first at row 2"),
    ],
)
def test_nan_during_fit_warns_once_and_skips(tmp_path, tb_events, poison, quantity, detail) -> None:
    cb = AttributionLogger(num_samples=4, stages=("fit",), every_n_epochs=1, name=f"nan_{poison}")
    injected = PoisonWeights() if poison == "weights" else PoisonProbe(cb)
    caught = _fit(tmp_path, cb, injected)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert f"stage 'fit', epoch 1, step 8: {quantity} skipped" in message
    assert re.search(detail, message)
    events = tb_events(tmp_path)
    tag = f"fit/nan_{poison}"
    # epoch 0 is logged; epochs 1 and 2 are skipped, nothing non-finite reaches TensorBoard
    assert len(events.Images(f"{tag}/attributions")) == 1
    gaps = events.Scalars(f"{tag}/completeness_gap")
    assert len(gaps) == 1 and math.isfinite(gaps[0].value)
    assert f"{tag}/rank_agreement_with_previous" not in events.Tags()["scalars"]
    folder = tmp_path / "run" / "version_0" / "xai" / f"nan_{poison}" / "fit" / "attributions"
    assert len(list(folder.glob("*.png"))) == 1
    if poison == "weights":  # the .pt keeps the values and says they are not finite
        saved = torch.load(sorted(folder.glob("*.pt"))[-1], weights_only=True)
        assert saved["finite"] is False and not torch.isfinite(saved["attributions"]).all()


@pytest.mark.parametrize("poison", ["weights", "inputs"])
def test_strict_raises_instead(tmp_path, poison) -> None:
    cb = AttributionLogger(
        num_samples=4, stages=("fit",), every_n_epochs=1, strict=True, name=f"strict_{poison}"
    )
    injected = PoisonWeights() if poison == "weights" else PoisonProbe(cb)
    trainer = make_trainer(tmp_path, callbacks=[cb, injected], max_epochs=3)
    with pytest.raises(ValueError, match=r"stage 'fit', epoch 1.*strict=True raises"):
        trainer.fit(TinyClassifier(), datamodule=tiny_digits())
    assert trainer.current_epoch == 1


def test_nan_probe_before_training_is_flagged_not_a_configuration_error(tmp_path) -> None:
    dm = tiny_digits()
    dm.setup("fit")
    cb = AttributionLogger(num_samples=4, stages=("validate",), name="nan_at_start")
    # the bad example is a probe but not in the batches validation runs (the module's own steps
    # refuse non-finite inputs), so only the callback meets it
    last = len(dm.val_dataset) - 1
    cb.probe_indices["val"] = [last, 1, 2, 3]
    dm.val_dataset.x[last, 0, 0, 0] = math.inf
    trainer = make_trainer(tmp_path, callbacks=[cb], limit_val_batches=1)
    with pytest.warns(NonFiniteWarning, match=r"'validate'.*the probe inputs.*row 0") as caught:
        trainer.validate(TinyClassifier(), datamodule=dm, verbose=False)
    assert len([w for w in caught if w.category is NonFiniteWarning]) == 1
