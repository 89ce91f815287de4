"""metrics."""

from lightning_xai.metrics.attribution import AttributionRankCorrelation, CompletenessGap
from lightning_xai.metrics.consistency import ExampleConsistency, FeatureConsistency
from lightning_xai.metrics.right_reasons import RightReasonsScore

__all__: list[str] = [
    "AttributionRankCorrelation",
    "CompletenessGap",
    "ExampleConsistency",
    "FeatureConsistency",
    "RightReasonsScore",
]
