"""Right for the right reasons on text, explained word by word.

Generated sentences are labelled by one sentiment word ("good", "awful", ...); in training a
decoy word ("today" / "yesterday") gives the label away as well. A plain token classifier
learns the decoy and fails when the decoy word is random at test time; the same model trained
with the penalty on the gradient at the decoy word's embedding uses the sentiment word. An
AttributionLogger shows it: integrated gradients on the embedding layer, one coloured word per
token, under TEXT and IMAGES in TensorBoard.

    python examples/text.py
    tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.attribution import Attributor
from lightning_xai.callbacks import AttributionLogger
from lightning_xai.data import KeywordSentencesDataModule, ids_to_tokens
from lightning_xai.modules import ExplanationRegularizedClassifier
from lightning_xai.nn import TokenClassifier


def mean_attribution(model: torch.nn.Module, columns: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean |integrated gradients| of the sentiment word, the decoy word and the fillers."""
    result = Attributor(model, "integrated_gradients", layer="embedding").attribute(columns)
    scores = result.attributions.abs()
    filler = columns["attention_mask"].bool() & ~columns["rationale"] & ~columns["mask"]
    return {
        "|attr| keyword": scores[columns["rationale"]].mean().item(),
        "|attr| decoy": scores[columns["mask"]].mean().item(),
        "|attr| filler": scores[filler].mean().item(),
    }


def train_and_test(penalty_weight: float, epochs: int = 5) -> dict[str, float]:
    pl.seed_everything(0, verbose=False)
    data = KeywordSentencesDataModule(batch_size=32)
    model = ExplanationRegularizedClassifier(
        TokenClassifier(data.vocab_size, embedding_dim=16, num_classes=data.num_classes),
        num_classes=data.num_classes,
        penalty_weight=penalty_weight,
        lr=1e-2,
        layer="embedding",  # token ids: the gradient is taken at the embedding's output
    )
    name = "text_example_penalty" if penalty_weight else "text_example_plain"
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger("lightning_logs", name=name, default_hp_metric=False),
        callbacks=[
            AttributionLogger(
                "integrated_gradients",
                num_samples=8,
                every_n_epochs=1,
                layer="embedding",
                vocabulary=ids_to_tokens,
            )
        ],  # fmt: skip
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    decoy = trainer.test(model, datamodule=data, verbose=False)[0]  # random decoy words
    data.test_split = "clean"  # the same sentences without a decoy word
    clean = trainer.test(model, datamodule=data, verbose=False)[0]
    return {
        "decoy-test acc": decoy["test/acc"],
        "clean-test acc": clean["test/acc"],
        "gradient share on decoy": decoy["test/right_reasons"],
        **mean_attribution(model.model.eval(), data.decoy_test_dataset.columns),
    }


def main() -> None:
    rows = {"plain": train_and_test(0.0), "right reasons (λ=100)": train_and_test(100.0)}
    print(f"\n{'model':<22}" + "".join(f"{k:>25}" for k in next(iter(rows.values()))))
    for name, row in rows.items():
        print(f"{name:<22}" + "".join(f"{v:>25.3f}" for v in row.values()))


if __name__ == "__main__":
    main()
