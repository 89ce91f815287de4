"""Shared plumbing: gradient context, atomic files, reporting to loggers."""

from lightning_xai.utilities.batches import AdaptedBatch, BatchAdapter
from lightning_xai.utilities.gradients import grad_enabled, to_autograd
from lightning_xai.utilities.io import atomic_save, atomic_write
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.report import Reporter, log_dir_of, to_image_array
from lightning_xai.utilities.run_report import write_run_report

__all__ = [
    "AdaptedBatch",
    "BatchAdapter",
    "Reporter",
    "atomic_save",
    "atomic_write",
    "eval_mode",
    "grad_enabled",
    "log_dir_of",
    "to_autograd",
    "to_image_array",
    "write_run_report",
]
