"""Label-free explanations of an autoencoder on 8x8 digits.

Trains an AutoEncoder without labels (TracIn checkpoints recorded every 5 epochs, example
importance of 8 validation digits logged by SimplEx every 10 epochs), then, outside the
Trainer, explains 100 test digits by the training digits that build their representation and
scores the explanations with labels the model never saw:

    python examples/labelfree.py
    tensorboard --logdir lightning_logs   (IMAGES: fit/example_importance_logger/examples)
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.attribution import Attributor
from lightning_xai.callbacks import ExampleImportanceLogger, TracInCheckpoint
from lightning_xai.data import DigitsDataModule
from lightning_xai.influence import LabelFreeTracIn, LatentNearestNeighbours, SimplEx
from lightning_xai.metrics import ExampleConsistency, FeatureConsistency
from lightning_xai.modules import AutoEncoder


def main() -> None:
    pl.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=64)
    model = AutoEncoder(latent_dim=16, pretext=None)
    recorder = TracInCheckpoint(every_n_epochs=5, parameters="encoder")
    trainer = pl.Trainer(
        max_epochs=30,
        accelerator="cpu",
        log_every_n_steps=5,
        logger=TensorBoardLogger("lightning_logs", name="labelfree_example"),
        callbacks=[
            recorder,
            ExampleImportanceLogger(
                "simplex", every_n_epochs=10, method_kwargs={"corpus_top_k": 32}
            ),
        ],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    model.eval()

    train, test = data.train_dataset, data.test_dataset
    x_train, y_train, x_test, y_test = train.x[:1000], train.y[:1000], test.x[:100], test.y[:100]
    explainers = {
        "SimplEx (whole corpus)": SimplEx(model.encode, corpus_top_k=None),
        "SimplEx (default local corpus of 32)": SimplEx(model.encode),
        "nearest neighbours": LatentNearestNeighbours(model.encode),
        "label-free TracIn": LabelFreeTracIn(model, recorder.store, show_progress=False),
    }
    print(
        "top-10 label agreement of the most important training digits (labels unseen by the model):"
    )
    for name, explainer in explainers.items():
        top = explainer.top_k(x_test, x_train, k=10)
        metric = ExampleConsistency(k=10)
        metric.update(top.indices, y_test, y_train)
        print(f"  {name:<30} {float(metric.compute()):.3f}")

    attributions = Attributor(
        model, "integrated_gradients", label_free=True, forward_fn=model.encode
    ).attribute(x_test)
    consistency = FeatureConsistency(model.encode, k=4, n_random=10)
    consistency.update(x_test, attributions.attributions)
    shifts = {key: round(float(value), 3) for key, value in consistency.compute().items()}
    print(f"latent shift, 4 most attributed pixels vs 4 random ones masked: {shifts}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
