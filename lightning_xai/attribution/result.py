"""The result of an attribution run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_xai.attribution.completeness import completeness_gaps, relative_completeness_gap

InputKind = Literal["tokens", "image", "signal", "tabular"]


def input_kind(inputs: Tensor) -> InputKind:
    """How an explained input is shown: integer ``(N, T)`` ``"tokens"``, ``(N, C, H, W)``
    ``"image"``, ``(N, C, T)`` ``"signal"``, anything else flattened to ``"tabular"``.

    Example:
        >>> input_kind(torch.zeros(2, 7, dtype=torch.long)), input_kind(torch.zeros(2, 3, 5, 4))
        ('tokens', 'image')
    """
    if not (inputs.is_floating_point() or inputs.is_complex()) and inputs.dim() == 2:
        return "tokens"
    if inputs.dim() == 4:
        return "image"
    if inputs.dim() == 3:
        return "signal"
    return "tabular"


@dataclass
class AttributionResult:
    """Attributions of a batch, with what is needed to read and check them.

    Attributes:
        attributions: ``(N, ...)``: input-shaped, or layer-shaped for layer methods; ``(N, T)``
            per token for integer token ids. A tuple, one per input, when several inputs are
            explained.
        inputs: the explained inputs ``(N, ...)`` (a tuple for several inputs).
        targets: the explained class per example ``(N,)``; ``None`` in label-free mode.
        method: the method's name, e.g. ``"integrated_gradients"`` or
            ``"smoothgrad(saliency)"``.
        layer: the layer's module path for layer methods (or the embedding layer of token
            ids), else ``None``.
        output_delta: ``f(x) - f(baseline)`` per example for methods with a completeness
            property, else ``None``.
        mask: for token ids, ``(N, T)`` with ``True`` at real tokens (padding has attribution
            0), else ``None``.
        labels: the batch's class labels ``(N,)`` when it has integer labels, else ``None``.
        predictions: the predicted class per example ``(N,)`` (argmax of the class scores),
            ``None`` in label-free mode or for one output per example.
        probabilities: the probability of each prediction ``(N,)`` (softmax of the class
            scores, or the scores themselves when they already are probabilities).

    Example:
        >>> r = AttributionResult(torch.ones(2, 3), torch.zeros(2, 3), None, "demo",
        ...                       output_delta=torch.tensor([3.0, 2.0]))
        >>> r.completeness_gap
        tensor([0., 1.])
        >>> round(r.relative_completeness_gap, 3)
        0.2
    """

    attributions: Tensor | tuple[Tensor, ...]
    inputs: Tensor | tuple[Tensor, ...]
    targets: Tensor | None
    method: str
    layer: str | None = None
    output_delta: Tensor | None = None
    mask: Tensor | None = None
    labels: Tensor | None = None
    predictions: Tensor | None = None
    probabilities: Tensor | None = None

    @property
    def num_inputs(self) -> int:
        """The number of explained inputs."""
        return len(self.inputs) if isinstance(self.inputs, tuple) else 1

    def parts(self) -> list[tuple[Tensor, Tensor]]:
        """``(attributions, inputs)`` of each explained input."""
        if isinstance(self.inputs, tuple):
            return list(zip(self.attributions, self.inputs))  # type: ignore[arg-type]
        return [(self.attributions, self.inputs)]  # type: ignore[list-item]

    @property
    def completeness_gap(self) -> Tensor | None:
        """Per-example ``|sum(attributions) - (f(x) - f(baseline))|`` (summed over every
        input), or ``None``."""
        if self.output_delta is None:
            return None
        return completeness_gaps(self.attributions, self.output_delta)

    @property
    def relative_completeness_gap(self) -> float | None:
        """Batch gap relative to ``sum |f(x) - f(baseline)|``, or ``None``."""
        if self.output_delta is None:
            return None
        return float(relative_completeness_gap(self.attributions, self.output_delta))

    def non_finite(self) -> list[str]:
        """The quantities that hold NaN or inf: ``"attributions"`` and/or ``"output_delta"``
        (empty when everything is finite).

        Example:
            >>> AttributionResult(torch.tensor([[float("nan")]]), torch.zeros(1, 1), None, "x").non_finite()
            ['attributions']
        """
        bad = []
        if not all(bool(torch.isfinite(a).all()) for a, _ in self.parts()):
            bad.append("attributions")
        if self.output_delta is not None and not bool(torch.isfinite(self.output_delta).all()):
            bad.append("output_delta")
        return bad

    def heatmaps(self) -> Tensor | tuple[Tensor, ...]:
        """One map per example for display: ``(N, H, W)`` for images, ``(N, T)`` for signals
        and tokens, ``(N, F)`` otherwise (a tuple for several inputs).

        Channels are summed (signed). Layer attributions of a convolutional layer are summed
        over channels and resized to the input's height and width (signals: length).

        Example:
            >>> r = AttributionResult(torch.ones(2, 4, 2, 2), torch.zeros(2, 1, 8, 10), None, "x")
            >>> r.heatmaps().shape
            torch.Size([2, 8, 10])
        """
        maps = tuple(_heatmap(a, x) for a, x in self.parts())
        return maps if isinstance(self.inputs, tuple) else maps[0]

    def flat(self) -> Tensor:
        """``(N, features)``: every input's attributions flattened and concatenated."""
        return torch.cat([a.reshape(len(a), -1) for a, _ in self.parts()], dim=1)

    def cpu(self) -> AttributionResult:
        """A copy with every tensor detached and on the CPU (for saving)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach().cpu()

        def move_all(t: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
            if isinstance(t, tuple):
                return tuple(v.detach().cpu() for v in t)
            return t.detach().cpu()

        return AttributionResult(
            attributions=move_all(self.attributions),
            inputs=move_all(self.inputs),
            targets=move(self.targets),
            method=self.method,
            layer=self.layer,
            output_delta=move(self.output_delta),
            mask=move(self.mask),
            labels=move(self.labels),
            predictions=move(self.predictions),
            probabilities=move(self.probabilities),
        )


def _heatmap(attributions: Tensor, inputs: Tensor) -> Tensor:
    attr = attributions.detach().float()
    if inputs.dim() == 4:
        if attr.dim() == 4:
            maps = attr.sum(dim=1, keepdim=True)
            if maps.shape[-2:] != inputs.shape[-2:]:
                maps = F.interpolate(maps, size=inputs.shape[-2:], mode="bilinear")
            return maps[:, 0]
        if attr.dim() == 3:  # (N, H, W)
            return attr
    if inputs.dim() == 3 and attr.dim() == 3:  # (N, C, T) signals, or a Conv1d layer
        maps = attr.sum(dim=1, keepdim=True)
        if maps.shape[-1] != inputs.shape[-1]:
            maps = F.interpolate(maps, size=inputs.shape[-1], mode="linear")
        return maps[:, 0]
    return attr.reshape(len(attr), -1)
