"""Concept models end to end on the bundled digits: train a concept embedding model with
intervention curves logged, intervene by hand without a Trainer, and log the logic rules of a
concept bottleneck model's logic head, scored on predicted and on true concepts.

    python examples/concepts.py [--epochs 20]
    tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.callbacks import InterventionLogger, LogicRuleLogger
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

    # 3. rules: a bottleneck model with a logic head on digit parity over the 10 identity
    # concepts; LogicRuleLogger reads one rule per class from the head, chooses it on the
    # predicted concepts and scores it on the predicted and on the true validation concepts
    parity = ConceptDigitsDataModule(task="parity", concept_set="identity", batch_size=64)
    cbm = ConceptBottleneckModel(
        MLP(64, (128,), 64), parity.n_concepts, parity.n_classes, parity.concept_names,
        parity.class_names, head="logic", hidden=(8,), lr=3e-3,
    )  # fmt: skip
    rules = LogicRuleLogger(stages=("fit",), every_n_epochs=None)  # after the last epoch
    pl.Trainer(
        max_epochs=args.epochs,
        logger=TensorBoardLogger("lightning_logs", name="concepts_rules", default_hp_metric=False),
        callbacks=[rules],
        enable_progress_bar=False,
    ).fit(cbm, parity)
    for rule, on_truth, known in zip(rules.rules, rules.rules_on_true_concepts, parity.rules):
        print(
            f"{rule.class_name}: {rule}  (accuracy on predicted concepts {rule.accuracy:.3f}, "
            f"on true concepts {on_truth.accuracy:.3f}; known rule: {known})"
        )


if __name__ == "__main__":
    main()
