"""LightningModules: classifiers, explainers and autoencoders."""

from lightning_xai.modules.autoencoder import AutoEncoder, VariationalAutoEncoder
from lightning_xai.modules.classifier import Classifier
from lightning_xai.modules.explanation_regularized import ExplanationRegularizedClassifier

__all__ = [
    "AutoEncoder",
    "Classifier",
    "ExplanationRegularizedClassifier",
    "VariationalAutoEncoder",
]
