"""Log intervention curves of concept models: task accuracy as true concepts are filled in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from lightning_xai.callbacks.base import Stage, XAICallback, check_adapter
from lightning_xai.concepts.intervention import (
    STRATEGIES,
    InterventionCurve,
    Strategy,
    intervention_curves,
)
from lightning_xai.utilities.batches import BatchAdapter, check_labels, resolve_callable

__all__ = ["InterventionLogger"]

_LABELS = {"random": "random order", "uncertainty": "most uncertain first"}


def curve_figure(curves: Sequence[InterventionCurve], title: str, subtitle: str = "") -> np.ndarray:
    """An RGB picture of intervention curves that explains itself: what is corrected, the
    accuracy without intervention (dashed), one line per order of correction with its start,
    end and mean, integer counts, and a y range fitted to the curves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = [a for curve in curves for a in curve.accuracy]
    k = max((max(curve.counts) for curve in curves), default=0)
    for curve, marker in zip(curves, "os^v"):
        ax.plot(
            curve.counts,
            curve.accuracy,
            marker=marker,
            markersize=3.5,
            label=(
                f"{_LABELS.get(curve.strategy, curve.strategy)}: {curve.accuracy[0]:.3f} → "
                f"{curve.accuracy[-1]:.3f}, mean {curve.area():.3f}"
            ),
        )
    start = [curve.accuracy[0] for curve in curves if curve.counts and curve.counts[0] == 0]
    if start:
        ax.axhline(
            start[0],
            color="0.45",
            linestyle="--",
            linewidth=0.9,
            label=f"no intervention: {start[0]:.3f}",
        )
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.01, 0.08 * (high - low))
    ax.set_ylim(max(0.0, low - 2 * pad), high + 0.5 * pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"concepts corrected (predicted value replaced by the true one), of {k}")
    ax.set_ylabel("task accuracy")
    fig.suptitle(title, fontsize=10)
    if subtitle:
        ax.set_title(subtitle, fontsize=8, color="0.3")
    ax.grid(alpha=0.3)
    ax.legend(
        loc="lower right",
        fontsize=8,
        title="order of correction: without → with every concept corrected",
        title_fontsize=8,
    )
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class InterventionLogger(XAICallback):
    """Log the intervention curve of a concept model: task accuracy on fixed probe samples after
    correcting 0, 1, …, k predicted concepts with their true values, in a random order and most
    uncertain first (:func:`~lightning_xai.concepts.intervention_curves`).

    The model must follow the concept-model protocol (``concept_outputs``/``task_outputs``):
    :class:`~lightning_xai.modules.ConceptBottleneckModel`,
    :class:`~lightning_xai.modules.ConceptEmbeddingModel`, or a user module that has them.
    It logs under ``<stage>/<name>/`` (``name`` defaults to ``intervention_logger``):

    * ``<strategy>/corrected_<j>``: the accuracy after correcting ``j`` concepts (the scalar
      series), and ``<strategy>/area`` (mean accuracy over the curve);
    * ``curve``: a plot of every strategy's curve (PNG in ``xai/<name>/<stage>/curve/``) with the
      numbers in a CSV next to it.

    Before the first step (and at the start of ``validate``/``test``) it checks, on a real probe
    batch, that the model is a concept model and that concepts and labels fit its outputs.

    Args:
        stages: the trainer entry points in which to run (by default ``validate`` and
            ``test``; add ``"fit"`` for a curve per epoch).
        every_n_epochs: during ``fit``, run every n-th epoch (and after the last one).
        num_samples: probe samples the curve is measured on.
        strategies: orders of correction: ``"random"`` and/or ``"uncertainty"``.
        counts: numbers of corrected concepts to measure (default ``0..k``).
        seed: seed of the probe samples and of the random order.
        adapter: how to read the model inputs and task labels (default: the module's
            ``adapter``).
        concepts: where batches keep the concept annotations (default: the module's
            ``concepts``; an index, a key, or a callable or its dotted path).
        name: the tag and folder component.
        verbose: print one line per stage with the headline figures.

    Example:
        >>> logger = InterventionLogger(num_samples=128)
        >>> logger.name, logger.strategies
        ('intervention_logger', ('random', 'uncertainty'))
    """

    def __init__(
        self,
        stages: Sequence[Stage] = ("validate", "test"),
        every_n_epochs: int | None = 1,
        num_samples: int = 512,
        strategies: Sequence[Strategy] = STRATEGIES,
        counts: Sequence[int] | None = None,
        seed: int = 0,
        adapter: BatchAdapter | None = None,
        concepts: int | str | Any = None,
        name: str | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            stages=stages,
            every_n_epochs=every_n_epochs,
            num_samples=num_samples,
            seed=seed,
            name=name,
            verbose=verbose,
        )
        if isinstance(strategies, str):
            strategies = (strategies,)
        if not strategies or any(s not in STRATEGIES for s in strategies):
            raise MisconfigurationException(
                f"`strategies` must be a non-empty subset of {STRATEGIES}, got "
                f"{tuple(strategies)!r}."
            )
        if counts is not None and (
            not counts
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts)
        ):
            raise MisconfigurationException(
                f"`counts` must be None (every count 0..k) or non-negative ints, got {counts!r}."
            )
        check_adapter(adapter, "BatchAdapter(inputs=0, labels=2)")
        self.strategies = tuple(dict.fromkeys(strategies))
        self.counts = None if counts is None else sorted(set(counts))
        self.adapter = adapter
        self.concepts = resolve_callable(concepts)
        self.curves: list[InterventionCurve] = []

    # ------------------------------------------------------------------ batches
    def read(self, batch: Any, pl_module: pl.LightningModule) -> tuple[tuple, dict, Tensor, Any]:
        """``(args, kwargs, concepts, labels)`` of a batch: the model's arguments, the concept
        annotations and the task labels."""
        adapter = self.adapter or getattr(pl_module, "adapter", None) or BatchAdapter()
        where = (
            self.concepts if self.concepts is not None else getattr(pl_module, "concepts", "auto")
        )
        if where == "auto":
            where = "concepts" if isinstance(batch, dict) else 1
        try:
            split = adapter.split(batch, pl_module)
            concepts = BatchAdapter(inputs=adapter.inputs, labels=where, forward_kwargs=None)
            concepts = concepts.split(batch).labels
        except ValueError as err:
            raise MisconfigurationException(
                f"InterventionLogger cannot read a batch: {err}"
            ) from err
        args, kwargs = split.arguments()
        return args, kwargs, concepts, split.labels

    # ------------------------------------------------------------------ checks
    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The module is a concept model; concepts and labels of a probe batch fit it."""
        missing = [
            m
            for m in ("concept_outputs", "task_outputs")
            if not callable(getattr(pl_module, m, None))
        ]
        if missing:
            raise MisconfigurationException(
                f"InterventionLogger needs a concept model (with `concept_outputs` and "
                f"`task_outputs`), such as lightning_xai.modules.ConceptBottleneckModel or "
                f"ConceptEmbeddingModel; {type(pl_module).__name__} lacks {missing}."
            )
        batch = self.check_batch(trainer, pl_module, stage)
        args, kwargs, concepts, labels = self.read(batch, pl_module)
        with torch.no_grad():
            out = pl_module.concept_outputs(*args, **kwargs)
        k = out.concept_logits.shape[1]
        if concepts is None or tuple(concepts.shape) != tuple(out.concept_logits.shape):
            shape = None if concepts is None else tuple(concepts.shape)
            raise MisconfigurationException(
                f"InterventionLogger: the concept annotations of a batch (`concepts="
                f"{self.concepts!r}`) have shape {shape}, but the model predicts "
                f"{tuple(out.concept_logits.shape)}; point `concepts=` at the (N, {k}) tensor."
            )
        if self.counts is not None and max(self.counts) > k:
            raise MisconfigurationException(
                f"`counts={self.counts}` asks for up to {max(self.counts)} corrected concepts, "
                f"but the model has {k}; use counts within [0, {k}]."
            )
        if labels is None:
            raise MisconfigurationException(
                "InterventionLogger found no task labels in a batch; point "
                "`adapter=BatchAdapter(labels=<index or key>)` at them."
            )
        try:
            check_labels(labels, out.task_logits, source="the probe batch's labels")
        except ValueError as err:
            raise MisconfigurationException(f"InterventionLogger: {err}") from err

    @override
    def summary_line(self, trainer: pl.Trainer, stage: str) -> str | None:
        """Headline figures only: per order, accuracy without and with every concept corrected
        and the curve's mean (the per-count values are in TensorBoard and the CSV)."""
        line = super().summary_line(trainer, stage)
        if line is None or not self.curves:
            return line
        shown = "; ".join(
            f"{_LABELS.get(c.strategy, c.strategy)} {c.accuracy[0]:.4f} -> {c.accuracy[-1]:.4f} "
            f"({c.counts[-1]} corrected), mean {c.area():.4f}"
            for c in self.curves
        )
        folder = line.rsplit("; files in ", 1)[-1]
        head = f"{type(self).__name__} {self.name!r} ({stage})"
        return f"{head}: task accuracy {shown}; files in {folder}"

    # ------------------------------------------------------------------ running
    @override
    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        args, kwargs, concepts, labels = self.read(batch, pl_module)
        self.curves = intervention_curves(
            pl_module,
            args,
            concepts,
            labels,
            strategies=self.strategies,
            counts=self.counts,
            seed=self.seed,
            forward_kwargs=kwargs,
        )
        reporter = self.reporter(trainer)
        step, epoch = self.step(trainer), self.epoch(trainer)
        scalars: dict[str, float] = {}
        for curve in self.curves:
            width = len(str(max(curve.counts)))
            for count, accuracy in zip(curve.counts, curve.accuracy):
                scalars[self.tag(stage, f"{curve.strategy}/corrected_{count:0{width}d}")] = accuracy
            scalars[self.tag(stage, f"{curve.strategy}/area")] = curve.area()
        reporter.log_scalars(scalars, step)
        tag = self.tag(stage, "curve")
        split = "test" if stage == "test" else "validation"
        title = f"Intervention curve: {type(pl_module).__name__}, {stage}, epoch {epoch}"
        subtitle = (
            f"task accuracy on {self.curves[0].n_samples} {split} samples; "
            "mean = normalised area under the curve"
        )
        reporter.log_image(tag, curve_figure(self.curves, title, subtitle), step)
        rows = [row for curve in self.curves for row in curve.to_rows()]
        reporter.save(reporter.file_for(tag, step, ".csv"), rows)
