"""Functional twins of the metrics in :mod:`lightning_xai.metrics`."""

from lightning_xai.metrics.functional.attribution import (
    attribution_rank_correlation,
    completeness_gap,
)
from lightning_xai.metrics.functional.consistency import example_consistency, feature_consistency
from lightning_xai.metrics.functional.logic import rule_accuracy, rule_complexity, rule_fidelity
from lightning_xai.metrics.functional.right_reasons import right_reasons_score

__all__ = [
    "attribution_rank_correlation",
    "completeness_gap",
    "example_consistency",
    "feature_consistency",
    "right_reasons_score",
    "rule_accuracy",
    "rule_complexity",
    "rule_fidelity",
]
