"""LightningModules: classifiers, explainers and autoencoders."""

from lightning_xai.modules.classifier import Classifier
from lightning_xai.modules.explanation_regularized import ExplanationRegularizedClassifier

__all__ = [
    "Classifier",
    "ExplanationRegularizedClassifier",
]
