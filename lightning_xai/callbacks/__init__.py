"""Callbacks that explain a model during fit, validate and test."""

from lightning_xai.callbacks.base import XAICallback

__all__ = [
    "XAICallback",
]
