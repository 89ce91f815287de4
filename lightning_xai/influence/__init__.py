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
from lightning_xai.influence.lds import (
    LDSResult,
    correct_class_margins,
    linear_datamodeling_score,
    random_subsets,
)
from lightning_xai.influence.per_sample_grads import (
    check_finite_batch,
    per_sample_grads,
    select_parameters,
)
from lightning_xai.influence.projection import GradientFeatures, GradientSketch
from lightning_xai.influence.tracin import InfluenceResult, SelfInfluenceResult, TopKResult, TracIn
from lightning_xai.influence.trak import TRAK, gcv_damping

__all__: list[str] = [
    "TRAK",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "GradientFeatures",
    "GradientSketch",
    "InfluenceResult",
    "LDSResult",
    "LabelFreeTracIn",
    "LatentNearestNeighbours",
    "NonFiniteError",
    "SelfInfluenceResult",
    "SimplEx",
    "TopKResult",
    "TracIn",
    "check_compatible",
    "check_finite_batch",
    "correct_class_margins",
    "encoded_features",
    "gcv_damping",
    "linear_datamodeling_score",
    "load_checkpoint_file",
    "per_sample_grads",
    "random_subsets",
    "resolve_encoder",
    "select_parameters",
    "simplex_weights",
]
