"""Functional twins of the metrics in :mod:`lightning_xai.metrics`."""

from lightning_xai.metrics.functional.attribution import (
    attribution_rank_correlation,
    completeness_gap,
)
from lightning_xai.metrics.functional.complexity import complexity, sparseness
from lightning_xai.metrics.functional.consistency import example_consistency, feature_consistency
from lightning_xai.metrics.functional.faithfulness import (
    FaithfulnessCurve,
    faithfulness_correlation,
    pixel_flipping,
    region_perturbation,
)
from lightning_xai.metrics.functional.localisation import (
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from lightning_xai.metrics.functional.logic import rule_accuracy, rule_complexity, rule_fidelity
from lightning_xai.metrics.functional.randomisation import (
    RandomisationResult,
    parameter_randomisation,
    randomisable_layers,
    ssim,
)
from lightning_xai.metrics.functional.right_reasons import right_reasons_score
from lightning_xai.metrics.functional.robustness import local_lipschitz_estimate, max_sensitivity

__all__ = [
    "FaithfulnessCurve",
    "RandomisationResult",
    "attribution_rank_correlation",
    "completeness_gap",
    "complexity",
    "example_consistency",
    "faithfulness_correlation",
    "feature_consistency",
    "local_lipschitz_estimate",
    "max_sensitivity",
    "parameter_randomisation",
    "pixel_flipping",
    "pointing_game",
    "randomisable_layers",
    "region_perturbation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "right_reasons_score",
    "rule_accuracy",
    "rule_complexity",
    "rule_fidelity",
    "sparseness",
    "ssim",
]
