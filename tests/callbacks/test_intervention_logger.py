"""InterventionLogger through a real Trainer, its TensorBoard events read back."""

from __future__ import annotations

import csv

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_xai.callbacks import InterventionLogger
from lightning_xai.concepts import intervention_curves
from lightning_xai.data import ConceptDigitsDataModule
from lightning_xai.modules import ConceptEmbeddingModel
from tests.helpers import TinyClassifier, make_trainer


def _cem(dm: ConceptDigitsDataModule) -> ConceptEmbeddingModel:
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
    return ConceptEmbeddingModel(encoder, dm.n_concepts, dm.n_classes, embedding_size=4, lr=1e-2)


def test_curves_logged_in_fit_validate_and_test(tmp_path, tb_events) -> None:
    dm = ConceptDigitsDataModule(task="parity", batch_size=64)
    model = _cem(dm)
    logger = InterventionLogger(
        stages=("fit", "validate", "test"), num_samples=64, counts=[0, 4, 17]
    )
    trainer = make_trainer(tmp_path, max_epochs=2, callbacks=[logger])
    trainer.fit(model, dm)
    trainer.validate(model, dm, verbose=False)
    trainer.test(model, dm, verbose=False)
    events = tb_events(tmp_path)
    scalars = events.tags()["scalars"]
    for stage in ("fit", "validate", "test"):
        for strategy in ("random", "uncertainty"):
            for count in ("00", "04", "17"):
                assert f"{stage}/intervention_logger/{strategy}/corrected_{count}" in scalars
        assert events.Images(f"{stage}/intervention_logger/curve")
    # the logged numbers are the algorithm's on the same probe samples
    dm.setup()
    rows = [dm.test_dataset[i] for i in logger.probe_indices["test"]]
    x, c, y = (torch.stack(t) for t in zip(*rows))
    curves = intervention_curves(model.eval(), x, c, y, counts=[0, 4, 17], seed=0)
    for curve in curves:
        logged = [
            events.Scalars(f"test/intervention_logger/{curve.strategy}/corrected_{k:02d}")[-1].value
            for k in (0, 4, 17)
        ]
        assert logged == pytest.approx(curve.accuracy, abs=1e-6)
    files = sorted((tmp_path / "run").rglob("xai/intervention_logger/test/curve/*.csv"))
    with files[-1].open() as f:
        table = list(csv.DictReader(f))
    assert {r["strategy"] for r in table} == {"random", "uncertainty"} and len(table) == 6
    assert sorted((tmp_path / "run").rglob("xai/intervention_logger/test/curve/*.png"))
    # the console line gives the headline figures, not every point of the curve
    line = logger.summary_line(trainer, "test")
    random = curves[0].accuracy
    assert f"random order {random[0]:.4f} -> {random[-1]:.4f} (17 corrected)" in line
    assert "corrected_04" not in line and "files in" in line


def test_errors_before_the_first_step(tmp_path) -> None:
    dm = ConceptDigitsDataModule(task="parity", batch_size=64)
    with pytest.raises(MisconfigurationException, match="concept model"):
        make_trainer(tmp_path, callbacks=[InterventionLogger(stages=("fit",))]).fit(
            TinyClassifier(), dm
        )
    model = _cem(dm)
    bad = InterventionLogger(stages=("fit",), concepts=0)
    with pytest.raises(MisconfigurationException, match="concepts="):
        make_trainer(tmp_path, callbacks=[bad]).fit(model, dm)
    assert model.global_step == 0
    with pytest.raises(MisconfigurationException, match="counts"):
        make_trainer(tmp_path, callbacks=[InterventionLogger(stages=("fit",), counts=[40])]).fit(
            model, dm
        )
    with pytest.raises(MisconfigurationException, match="strategies"):
        InterventionLogger(strategies=("greedy",))
