"""Right for the right reasons on decoy digits, and "find another explanation".

A corner patch whose intensity encodes the label is added to every training digit. A plain
model learns the shortcut and fails when the patch intensity is random at test time; the same
model trained with the input-gradient penalty on the patch ignores it. Both runs log, for 8
fixed validation and test digits, the input-gradient heatmap with the patch outlined
(TensorBoard IMAGES: ``fit/right_reasons/input_gradients``), so the difference is visible.

Then "find another explanation": three models in a row, each trained with the features the
previous ones relied on most forbidden, drawn side by side in one picture
(``fit/right_reasons/find_another``).

    python examples/rrr_decoy_digits.py
    tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from lightning_xai.data import DecoyDigitsDataModule
from lightning_xai.data.datasets import TensorPairDataset
from lightning_xai.modules import ExplanationRegularizedClassifier
from lightning_xai.modules.explanation_regularized import find_another_picture
from lightning_xai.nn import MLP
from lightning_xai.penalties import find_another_explanation
from lightning_xai.utilities import Reporter


def make_trainer(name: str, epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger("lightning_logs", name=name, default_hp_metric=False),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def train_and_test(penalty_weight: float, epochs: int = 30) -> dict[str, float]:
    pl.seed_everything(0, verbose=False)
    data = DecoyDigitsDataModule(batch_size=64)
    model = ExplanationRegularizedClassifier(
        MLP(data.image_size**2, (64,), 10), num_classes=10, penalty_weight=penalty_weight
    )
    trainer = make_trainer("rrr_example_penalty" if penalty_weight else "rrr_example_plain", epochs)
    trainer.fit(model, datamodule=data)
    decoy = trainer.test(model, datamodule=data, verbose=False)[0]  # random patch intensity
    data.test_split = "clean"  # the same digits without any patch
    clean = trainer.test(model, datamodule=data, verbose=False)[0]
    print(f"pictures: {trainer.logger.log_dir}/xai/right_reasons/")
    return {
        "decoy-test acc": decoy["test/acc"],
        "clean-test acc": clean["test/acc"],
        "gradient share on patch": decoy["test/right_reasons"],
    }


def find_another(models: int = 3, epochs: int = 15) -> None:
    """Train ``models`` models in a row, each forbidden what the previous ones relied on."""
    pl.seed_everything(0, verbose=False)
    data = DecoyDigitsDataModule(batch_size=64)
    data.setup("fit")
    x, y = data.train_dataset.x, data.train_dataset.y
    val = data.val_dataset
    probe = (val.x[:8], val.y[:8])
    trained, mask = [], None
    for k in range(models):
        pl.seed_everything(k, verbose=False)
        module = ExplanationRegularizedClassifier(
            MLP(data.image_size**2, (64,), 10), num_classes=10, penalty_weight=10.0
        )
        train = TensorPairDataset(x, y) if mask is None else TensorPairDataset(x, y, mask)
        trainer = make_trainer("rrr_example_find_another", epochs)
        trainer.fit(
            module,
            DataLoader(train, batch_size=64, shuffle=True),
            DataLoader(val, batch_size=256),
        )
        trained.append(module.model.eval())
        mask = find_another_explanation(module.model, x, mask)  # forbid what it relied on
        with torch.no_grad():
            accuracy = float((module.model(val.x).argmax(-1) == val.y).float().mean())
        print(f"model {k + 1}: validation accuracy {accuracy:.3f}")
    # the masks of models 2..k, built the same way on the probe digits (model 1 has none)
    probe_masks: list[torch.Tensor | None] = [None]
    for model in trained[:-1]:
        probe_masks.append(find_another_explanation(model, probe[0], probe_masks[-1]))
    picture = find_another_picture(
        trained,
        probe,
        probe_masks,
        title=f"Find another explanation: input gradients of models 1..{models} on 8 "
        "validation digits (each model forbidden what the previous ones relied on)",
    )
    reporter = Reporter(trainer, "right_reasons")
    path = reporter.log_image("fit/right_reasons/find_another", picture, trainer.global_step)
    print(f"find another explanation: {path}")


def main() -> None:
    rows = {"plain": train_and_test(0.0), "right reasons (λ=10)": train_and_test(10.0)}
    print(f"\n{'model':<22}" + "".join(f"{k:>26}" for k in next(iter(rows.values()))))
    for name, row in rows.items():
        print(f"{name:<22}" + "".join(f"{v:>26.3f}" for v in row.values()))
    find_another()


if __name__ == "__main__":
    main()
