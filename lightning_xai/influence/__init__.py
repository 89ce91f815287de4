"""influence."""

from lightning_xai.influence.checkpoints import Checkpoint, CheckpointStore
from lightning_xai.influence.latent import (
    LabelFreeTracIn,
    LatentNearestNeighbours,
    SimplEx,
    encoded_features,
    resolve_encoder,
    simplex_weights,
)
from lightning_xai.influence.per_sample_grads import per_sample_grads, select_parameters
from lightning_xai.influence.tracin import InfluenceResult, SelfInfluenceResult, TopKResult, TracIn

__all__: list[str] = [
    "Checkpoint",
    "CheckpointStore",
    "InfluenceResult",
    "LabelFreeTracIn",
    "LatentNearestNeighbours",
    "SelfInfluenceResult",
    "SimplEx",
    "TopKResult",
    "TracIn",
    "encoded_features",
    "per_sample_grads",
    "resolve_encoder",
    "select_parameters",
    "simplex_weights",
]
