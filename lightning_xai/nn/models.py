"""Small reference networks for the bundled data.

Every activation is its own ``nn.ReLU`` module, used once, so hook-based attribution methods
(DeepLift, GuidedBackprop, LRP) see each non-linearity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_xai.nn.autoencoders import _check_channels
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["MLP", "DigitsCNN"]


class DigitsCNN(nn.Module):
    """A small CNN for ``(1, 8, 8)`` digits: two 3x3 convolutions, then a linear head.

    Args:
        num_classes: number of logits.
        channels: channels of the two convolutions.

    Example:
        >>> DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        c1, c2 = _check_channels(channels)
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 16, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """``Flatten`` followed by ``Linear``/``ReLU`` layers.

    Args:
        in_features: size of the flattened input.
        hidden: widths of the hidden layers.
        out_features: number of outputs.

    Example:
        >>> MLP(64, (32,), 10)(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self, in_features: int = 64, hidden: Sequence[int] = (64,), out_features: int = 10
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"`hidden` must be a sequence of positive integers, got {hidden!r}.")
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(
                    f"`hidden` must hold positive integers (layer widths), got {h!r} in {hidden!r}."
                )
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
