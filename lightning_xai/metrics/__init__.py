"""metrics."""

from lightning_xai.metrics.attribution import AttributionRankCorrelation, CompletenessGap
from lightning_xai.metrics.consistency import ExampleConsistency, FeatureConsistency
from lightning_xai.metrics.logic import RuleAccuracy, RuleComplexity, RuleFidelity
from lightning_xai.metrics.quality import (
    Complexity,
    FaithfulnessCorrelation,
    LocalLipschitzEstimate,
    MaxSensitivity,
    ParameterRandomisation,
    PixelFlipping,
    PointingGame,
    RegionPerturbation,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
    Sparseness,
)
from lightning_xai.metrics.right_reasons import RightReasonsScore

__all__: list[str] = [
    "AttributionRankCorrelation",
    "CompletenessGap",
    "Complexity",
    "ExampleConsistency",
    "FaithfulnessCorrelation",
    "FeatureConsistency",
    "LocalLipschitzEstimate",
    "MaxSensitivity",
    "ParameterRandomisation",
    "PixelFlipping",
    "PointingGame",
    "RegionPerturbation",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "RightReasonsScore",
    "RuleAccuracy",
    "RuleComplexity",
    "RuleFidelity",
    "Sparseness",
]
