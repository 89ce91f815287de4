"""influence."""

from lightning_xai.influence.checkpoints import (
    Checkpoint,
    CheckpointStore,
    check_compatible,
    load_checkpoint_file,
)
from lightning_xai.influence.errors import CheckpointError, NonFiniteError
from lightning_xai.influence.latent import (
    LabelFreeTracIn,
    LatentNearestNeighbours,
    SimplEx,
    encoded_features,
    resolve_encoder,
    simplex_weights,
)
from lightning_xai.influence.per_sample_grads import (
    check_finite_rows,
    per_sample_grads,
    select_parameters,
)
from lightning_xai.influence.tracin import InfluenceResult, SelfInfluenceResult, TopKResult, TracIn

__all__: list[str] = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "InfluenceResult",
    "LabelFreeTracIn",
    "LatentNearestNeighbours",
    "NonFiniteError",
    "SelfInfluenceResult",
    "SimplEx",
    "TopKResult",
    "TracIn",
    "check_compatible",
    "check_finite_rows",
    "encoded_features",
    "load_checkpoint_file",
    "per_sample_grads",
    "resolve_encoder",
    "select_parameters",
    "simplex_weights",
]
