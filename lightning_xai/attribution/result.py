"""The result of an attribution run."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_xai.attribution.completeness import completeness_gaps, relative_completeness_gap


@dataclass
class AttributionResult:
    """Attributions of a batch, with what is needed to read and check them.

    Attributes:
        attributions: ``(N, ...)``: input-shaped, or layer-shaped for layer methods.
        inputs: the explained inputs ``(N, ...)``.
        targets: the explained class per example ``(N,)``; ``None`` in label-free mode.
        method: the method's name, e.g. ``"integrated_gradients"`` or
            ``"smoothgrad(saliency)"``.
        layer: the layer's module path for layer methods, else ``None``.
        output_delta: ``f(x) - f(baseline)`` per example for methods with a completeness
            property, else ``None``.

    Example:
        >>> r = AttributionResult(torch.ones(2, 3), torch.zeros(2, 3), None, "demo",
        ...                       output_delta=torch.tensor([3.0, 2.0]))
        >>> r.completeness_gap
        tensor([0., 1.])
        >>> round(r.relative_completeness_gap, 3)
        0.2
    """

    attributions: Tensor
    inputs: Tensor
    targets: Tensor | None
    method: str
    layer: str | None = None
    output_delta: Tensor | None = None

    @property
    def completeness_gap(self) -> Tensor | None:
        """Per-example ``|sum(attributions) - (f(x) - f(baseline))|``, or ``None``."""
        if self.output_delta is None:
            return None
        return completeness_gaps(self.attributions, self.output_delta)

    @property
    def relative_completeness_gap(self) -> float | None:
        """Batch gap relative to ``sum |f(x) - f(baseline)|``, or ``None``."""
        if self.output_delta is None:
            return None
        return float(relative_completeness_gap(self.attributions, self.output_delta))

    def heatmaps(self) -> Tensor:
        """One map per example for display: ``(N, H, W)`` for images, ``(N, F)`` otherwise.

        Channels are summed (signed). Layer attributions of a convolutional layer are summed
        over channels and resized to the input's height and width.

        Example:
            >>> r = AttributionResult(torch.ones(2, 4, 2, 2), torch.zeros(2, 1, 8, 8), None, "x")
            >>> r.heatmaps().shape
            torch.Size([2, 8, 8])
        """
        attr = self.attributions.detach().float()
        if self.inputs.dim() == 4:
            if attr.dim() == 4:
                maps = attr.sum(dim=1, keepdim=True)
                if maps.shape[-2:] != self.inputs.shape[-2:]:
                    maps = F.interpolate(maps, size=self.inputs.shape[-2:], mode="bilinear")
                return maps[:, 0]
            if attr.dim() == 3:  # (N, H, W)
                return attr
        if attr.shape == self.inputs.shape and attr.dim() == 3:  # (N, C, L) signals
            return attr.sum(dim=1)
        return attr.reshape(len(attr), -1)

    def cpu(self) -> AttributionResult:
        """A copy with every tensor detached and on the CPU (for saving)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach().cpu()

        return AttributionResult(
            attributions=torch.as_tensor(move(self.attributions)),
            inputs=torch.as_tensor(move(self.inputs)),
            targets=move(self.targets),
            method=self.method,
            layer=self.layer,
            output_delta=move(self.output_delta),
        )
