"""LightningModules: classifiers, explainers and autoencoders."""

from lightning_xai.modules.autoencoder import AutoEncoder, VariationalAutoEncoder
from lightning_xai.modules.classifier import Classifier
from lightning_xai.modules.concept_bottleneck import ConceptBottleneckModel
from lightning_xai.modules.concept_embedding import ConceptEmbeddingModel
from lightning_xai.modules.explanation_regularized import ExplanationRegularizedClassifier
from lightning_xai.modules.logic_explainer import LogicExplainer, MLPLogicExplainer
from lightning_xai.modules.subsets import train_subset_models

__all__ = [
    "AutoEncoder",
    "Classifier",
    "ConceptBottleneckModel",
    "ConceptEmbeddingModel",
    "ExplanationRegularizedClassifier",
    "LogicExplainer",
    "MLPLogicExplainer",
    "VariationalAutoEncoder",
    "train_subset_models",
]
