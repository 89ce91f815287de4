"""Input-gradient ("right for the right reasons") penalties and annotation-mask helpers."""

from lightning_xai.penalties.find_another import find_another_explanation
from lightning_xai.penalties.masks import box_mask, check_mask, largest_gradient_mask
from lightning_xai.penalties.right_reasons import (
    RightReasonsResult,
    check_sample_independence,
    log_prob_input_gradients,
    resolve_layer,
    right_reasons_penalty,
    sample_coupling_modules,
)

__all__ = [
    "RightReasonsResult",
    "box_mask",
    "check_mask",
    "check_sample_independence",
    "find_another_explanation",
    "largest_gradient_mask",
    "log_prob_input_gradients",
    "resolve_layer",
    "right_reasons_penalty",
    "sample_coupling_modules",
]
