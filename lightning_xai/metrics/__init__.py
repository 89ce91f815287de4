"""metrics."""

from lightning_xai.metrics.right_reasons import RightReasonsScore

__all__: list[str] = [
    "RightReasonsScore",
]
