"""metrics."""

from lightning_xai.metrics.attribution import AttributionRankCorrelation, CompletenessGap
from lightning_xai.metrics.consistency import ExampleConsistency, FeatureConsistency
from lightning_xai.metrics.logic import RuleAccuracy, RuleComplexity, RuleFidelity
from lightning_xai.metrics.right_reasons import RightReasonsScore

__all__: list[str] = [
    "AttributionRankCorrelation",
    "CompletenessGap",
    "ExampleConsistency",
    "FeatureConsistency",
    "RightReasonsScore",
    "RuleAccuracy",
    "RuleComplexity",
    "RuleFidelity",
]
