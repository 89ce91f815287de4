"""Attributions during training: a digits classifier and a label-free autoencoder.

1. A DigitsCNN classifier is trained with two AttributionLoggers: integrated gradients every
   epoch (image grid, completeness gap, rank agreement with the previous epoch, and
   explanation-quality curves: deletion/insertion AUC, faithfulness correlation, sparseness)
   and Grad-CAM of the second convolution at the end (with its deletion AUC and the parameter
   randomisation test as a picture). TensorBoard shows them under IMAGES, SCALARS and TEXT.
2. After training, the same attributions are computed without a Trainer, and the completeness
   gap of integrated gradients is compared with DeepLift's on the same samples.
3. An autoencoder is explained without labels (label-free GradientShap of its encoder).

    python examples/attribution.py
    tensorboard --logdir lightning_logs
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_xai.attribution import Attributor
from lightning_xai.callbacks import AttributionLogger
from lightning_xai.data import DigitsDataModule
from lightning_xai.modules import Classifier
from lightning_xai.modules.autoencoder import AutoEncoder
from lightning_xai.nn import DigitsCNN


def trainer(name: str, epochs: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger("lightning_logs", name=name),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def main() -> None:
    pl.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=64)
    model = Classifier(DigitsCNN(10), lr=0.003)
    callbacks: list[pl.Callback] = [
        AttributionLogger(
            "integrated_gradients",
            num_samples=16,
            every_n_epochs=1,
            quality=["deletion_auc", "insertion_auc", "faithfulness_correlation", "sparseness"],
        ),
        AttributionLogger(
            "layer_grad_cam",
            layer="features.2",
            name="grad_cam",
            every_n_epochs=10,
            quality=["deletion_auc", "randomisation"],
        ),
    ]
    run = trainer("attribution_example", 10, callbacks)
    run.fit(model, datamodule=data)
    run.test(model, datamodule=data, verbose=False)
    print(f"logs and files: {run.logger.log_dir}/xai/")
    # each callback printed its test line: which explanation is more faithful? (compare
    # quality/deletion_auc_lower_is_better of attribution_logger and grad_cam)

    # the same, in a notebook: no Trainer needed
    x, y = data.test_dataset.x[:64], data.test_dataset.y[:64]
    model.eval()
    for method in ("integrated_gradients", "deeplift"):
        result = Attributor(model, method, target="label", completeness_threshold=None).attribute(
            x, y
        )
        print(f"{method:>22}: relative completeness gap {result.relative_completeness_gap:.4f}")

    # label-free: which pixels does the autoencoder's representation depend on?
    pl.seed_everything(0, verbose=False)
    autoencoder = AutoEncoder(latent_dim=8)
    label_free = AttributionLogger(
        "gradient_shap", label_free=True, baseline="mean", stages=("fit",), every_n_epochs=5
    )
    trainer("attribution_label_free", 10, [label_free]).fit(autoencoder, datamodule=data)
    result = label_free.attributor.attribute(x[:8])
    print(f"label-free GradientShap: attributions {tuple(result.attributions.shape)}")


if __name__ == "__main__":
    main()
