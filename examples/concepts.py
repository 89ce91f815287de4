"""Concept models end to end on the bundled digits: train a concept embedding model with
intervention curves logged, intervene by hand without a Trainer, and read logic rules from a
concept bottleneck model's logic head.

    python examples/concepts.py [--epochs 20]
    tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.callbacks import InterventionLogger
from lightning_xai.concepts import intervene
from lightning_xai.data import ConceptDigitsDataModule
from lightning_xai.modules import ConceptBottleneckModel, ConceptEmbeddingModel
from lightning_xai.nn import MLP


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    pl.seed_everything(0)

    # 1. a concept embedding model on the digit task, intervention curves in validate and test
    dm = ConceptDigitsDataModule(task="digit", batch_size=64)
    cem = ConceptEmbeddingModel(
        MLP(64, (128,), 64), dm.n_concepts, dm.n_classes, dm.concept_names, dm.class_names
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        logger=TensorBoardLogger("lightning_logs", name="concepts", default_hp_metric=False),
        callbacks=[InterventionLogger(stages=("validate", "test"))],
        enable_progress_bar=False,
    )
    trainer.fit(cem, dm)
    trainer.test(cem, dm)

    # 2. interventions in a notebook: correct the three most uncertain concepts of each image
    x, concepts, y = dm.test_dataset.tensors
    cem.eval()
    with torch.no_grad():
        before = (cem(x).argmax(1) == y).float().mean()
        after = intervene(cem, x, concepts, which=3, strategy="uncertainty").argmax(1)
    print(
        f"task accuracy {before:.3f}; after correcting 3 concepts {(after == y).float().mean():.3f}"
    )

    # 3. rules: a bottleneck model with a logic head on digit parity
    parity = ConceptDigitsDataModule(task="parity", concept_set="identity", batch_size=64)
    cbm = ConceptBottleneckModel(
        MLP(64, (128,), 64), parity.n_concepts, parity.n_classes, parity.concept_names,
        parity.class_names, head="logic", hidden=(8,), training_mode="independent", lr=3e-3,
    )  # fmt: skip
    pl.Trainer(max_epochs=args.epochs, logger=False, enable_progress_bar=False).fit(cbm, parity)
    tx, _, ty = parity.train_dataset.tensors
    ex, _, ey = parity.test_dataset.tensors
    for rule, known in zip(cbm.explain(tx, ty, eval_x=ex, eval_y=ey), parity.rules):
        print(f"{rule.class_name}: {rule}  (accuracy {rule.accuracy:.3f}; known rule: {known})")


if __name__ == "__main__":
    main()
