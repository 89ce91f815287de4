"""TracIn on digits with 10% flipped training labels.

Training records checkpoints with ``TracInCheckpoint``; afterwards ``TracIn`` (plain torch, no
Trainer needed) ranks the training set by self-influence, which puts the flipped labels on top,
and finds the proponents and opponents of a few test digits. Pictures are written next to the
run's TensorBoard logs.

Run: ``python examples/tracin.py`` (about a minute on a laptop CPU; ``--epochs`` to change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.callbacks import TracInCheckpoint
from lightning_xai.data import DigitsDataModule
from lightning_xai.influence import SelfInfluenceResult, TracIn
from lightning_xai.modules import Classifier
from lightning_xai.nn import DigitsCNN
from lightning_xai.viz import example_grid, influence_grid


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def main(epochs: int) -> None:
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=32, flip_fraction=0.1)
    module = Classifier(model=DigitsCNN(), optimizer="sgd", lr=0.1)
    recorder = TracInCheckpoint(every_n_epochs=max(1, epochs // 10))
    logger = TensorBoardLogger("lightning_logs", name="tracin_example")
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=[recorder], logger=logger, enable_checkpointing=False
    )
    trainer.fit(module, datamodule=dm)

    train = dm.train_dataset
    tracin = TracIn(module, recorder.dirpath, per_sample_ce)
    self_inf = tracin.self_influence(train)
    top = self_inf.top(16)
    with torch.no_grad():
        loss = SelfInfluenceResult(per_sample_ce(module.eval()(train.x), train.y))
        preds = module(train.x[top]).argmax(1)
    print(f"{int(train.flipped.sum())} of {len(train)} training labels are flipped")
    for name, ranking in (("TracIn self-influence", self_inf), ("final loss", loss)):
        print(
            f"{name:>22s}: recall@10% {ranking.recall(train.flipped, 0.1):.2f}, @20% {ranking.recall(train.flipped, 0.2):.2f}"
        )

    out = Path(logger.log_dir)
    captions = [f"#{i} y={train.y[i]} p={p}" for i, p in zip(top.tolist(), preds.tolist())]
    grid = example_grid(
        train.x[top],
        captions,
        highlight=train.flipped[top],
        title="most self-influential (red: flipped)",
    )
    Image.fromarray(grid).save(out / "most_self_influential.png")

    test = dm.test_dataset
    probes = (test.x[:3], test.y[:3])
    pro = tracin.top_k(probes, train, k=4)
    opp = tracin.top_k(probes, train, k=4, proponents=False)
    grid = influence_grid(
        probes[0],
        train.x[pro.indices],
        train.x[opp.indices],
        [f"test y={y}" for y in probes[1].tolist()],
        [[f"+ y={train.y[i]}" for i in row] for row in pro.indices.tolist()],
        [[f"- y={train.y[i]}" for i in row] for row in opp.indices.tolist()],
    )
    Image.fromarray(grid).save(out / "proponents_opponents.png")
    print(f"pictures in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    main(parser.parse_args().epochs)
