"""Callbacks that explain a model during fit, validate and test."""

from lightning_xai.callbacks.base import XAICallback
from lightning_xai.callbacks.influence_logger import InfluenceLogger
from lightning_xai.callbacks.tracin_checkpoint import TracInCheckpoint

__all__ = [
    "InfluenceLogger",
    "TracInCheckpoint",
    "XAICallback",
]
