"""Right for the right reasons on decoy digits.

A corner patch whose intensity encodes the label is added to every training digit. A plain
model learns the shortcut and fails when the patch intensity is random at test time; the same
model trained with the input-gradient penalty on the patch ignores it.

    python examples/rrr_decoy_digits.py
    tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.data import DecoyDigitsDataModule
from lightning_xai.modules import ExplanationRegularizedClassifier
from lightning_xai.nn import MLP


def train_and_test(penalty_weight: float, epochs: int = 30) -> dict[str, float]:
    pl.seed_everything(0, verbose=False)
    data = DecoyDigitsDataModule(batch_size=64)
    model = ExplanationRegularizedClassifier(
        MLP(data.image_size**2, (64,), 10), num_classes=10, penalty_weight=penalty_weight
    )
    name = "rrr_example_penalty" if penalty_weight else "rrr_example_plain"
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger("lightning_logs", name=name),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    decoy = trainer.test(model, datamodule=data, verbose=False)[0]  # random patch intensity
    data.test_split = "clean"  # the same digits without any patch
    clean = trainer.test(model, datamodule=data, verbose=False)[0]
    return {
        "decoy-test acc": decoy["test/acc"],
        "clean-test acc": clean["test/acc"],
        "gradient share on patch": decoy["test/right_reasons"],
    }


def main() -> None:
    rows = {"plain": train_and_test(0.0), "right reasons (λ=10)": train_and_test(10.0)}
    print(f"\n{'model':<22}" + "".join(f"{k:>26}" for k in next(iter(rows.values()))))
    for name, row in rows.items():
        print(f"{name:<22}" + "".join(f"{v:>26.3f}" for v in row.values()))


if __name__ == "__main__":
    main()
