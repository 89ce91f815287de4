"""LightningModules: classifiers, explainers and autoencoders."""

from lightning_xai.modules.classifier import Classifier

__all__ = [
    "Classifier",
]
