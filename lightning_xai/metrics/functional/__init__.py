"""Functional twins of the metrics in :mod:`lightning_xai.metrics`."""

from lightning_xai.metrics.functional.right_reasons import right_reasons_score

__all__ = [
    "right_reasons_score",
]
