"""Attributions with any captum method: resolution by name, baselines, label-free mode, checks."""

from lightning_xai.attribution.attributor import (
    AttributionWarning,
    Attributor,
    NonFiniteAttributionWarning,
    NonFiniteInputError,
    check_arguments,
)
from lightning_xai.attribution.baselines import gaussian_blur, make_baseline, mean_input
from lightning_xai.attribution.checks import HookHazards, find_hook_hazards
from lightning_xai.attribution.completeness import completeness_gaps, relative_completeness_gap
from lightning_xai.attribution.config import TOKEN_LAYER_TWINS, AttributionConfig
from lightning_xai.attribution.label_free import LabelFreeOutput, latent_leaves
from lightning_xai.attribution.methods import (
    METHODS,
    MethodSpec,
    get_submodule,
    method_spec,
    resolve_method,
)
from lightning_xai.attribution.result import AttributionResult, input_kind

__all__ = [
    "METHODS",
    "TOKEN_LAYER_TWINS",
    "AttributionConfig",
    "AttributionResult",
    "AttributionWarning",
    "Attributor",
    "HookHazards",
    "LabelFreeOutput",
    "MethodSpec",
    "NonFiniteAttributionWarning",
    "NonFiniteInputError",
    "check_arguments",
    "completeness_gaps",
    "find_hook_hazards",
    "gaussian_blur",
    "get_submodule",
    "input_kind",
    "latent_leaves",
    "make_baseline",
    "mean_input",
    "method_spec",
    "relative_completeness_gap",
    "resolve_method",
]
