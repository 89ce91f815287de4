"""Callbacks that explain a model during fit, validate and test."""

from lightning_xai.callbacks.attribution_logger import AttributionLogger
from lightning_xai.callbacks.base import ScheduleCallback, XAICallback
from lightning_xai.callbacks.example_importance import ExampleImportanceLogger
from lightning_xai.callbacks.influence_logger import InfluenceLogger
from lightning_xai.callbacks.intervention_logger import InterventionLogger
from lightning_xai.callbacks.logic_rules import LogicRuleLogger
from lightning_xai.callbacks.tracin_checkpoint import TracInCheckpoint

__all__ = [
    "AttributionLogger",
    "ExampleImportanceLogger",
    "InfluenceLogger",
    "InterventionLogger",
    "LogicRuleLogger",
    "ScheduleCallback",
    "TracInCheckpoint",
    "XAICallback",
]
