"""Concept bottleneck and concept embedding networks, their loss, and test-time interventions
(plain torch, no Lightning)."""

from lightning_xai.concepts.intervention import (
    STRATEGIES,
    InterventionCurve,
    intervene,
    intervention_curves,
    intervention_mask,
    intervention_order,
    random_intervention,
)
from lightning_xai.concepts.layers import HEADS, ConceptEmbedding, concept_head, infer_features
from lightning_xai.concepts.networks import (
    BottleneckNetwork,
    ConceptOutputs,
    EmbeddingNetwork,
    concept_loss,
)

__all__ = [
    "HEADS",
    "STRATEGIES",
    "BottleneckNetwork",
    "ConceptEmbedding",
    "ConceptOutputs",
    "EmbeddingNetwork",
    "InterventionCurve",
    "concept_head",
    "concept_loss",
    "infer_features",
    "intervene",
    "intervention_curves",
    "intervention_mask",
    "intervention_order",
    "random_intervention",
]
