"""Encoders, decoders, pretext perturbations and losses for autoencoders on 8x8 digits.

Plain torch: :class:`~lightning_xai.modules.AutoEncoder` and
:class:`~lightning_xai.modules.VariationalAutoEncoder` train these, and the example-importance
methods of :mod:`lightning_xai.influence.latent` explain them without a ``Trainer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.utilities.validation import check_finite, check_positive_int

__all__ = [
    "DigitsDecoder",
    "DigitsEncoder",
    "gaussian_kl",
    "perturb",
    "reconstruction_loss",
]

ReconstructionLoss = Literal["mse", "bce"]
Pretext = Literal["denoise", "mask"]


class DigitsEncoder(nn.Module):
    """A small convolutional encoder from ``(1, 8, 8)`` images to ``out_features`` numbers.

    Two 3x3 convolutions (the second with stride 2, to 4x4) and a linear layer.

    Args:
        out_features: size of the representation (twice the latent size for a VAE, which
            reads means and log-variances from it).
        channels: channels of the two convolutions.

    Example:
        >>> DigitsEncoder(16)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 16])
    """

    def __init__(self, out_features: int = 16, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        check_positive_int("out_features", out_features)
        c1, c2 = _check_channels(channels)
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(c2 * 16, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsDecoder(nn.Module):
    """The mirror of :class:`DigitsEncoder`: ``latent_dim`` numbers to ``(1, 8, 8)`` logits.

    The output is unbounded (logits); apply ``torch.sigmoid`` to read it as an image in [0, 1].

    Args:
        latent_dim: size of the representation it decodes.
        channels: channels of the two (transposed) convolutions, in encoder order.

    Example:
        >>> DigitsDecoder(16)(torch.zeros(2, 16)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, latent_dim: int = 16, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        check_positive_int("latent_dim", latent_dim)
        c1, c2 = _check_channels(channels)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, c2 * 16),
            nn.ReLU(),
            nn.Unflatten(1, (c2, 4, 4)),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, 1, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def reconstruction_loss(
    decoded: torch.Tensor,
    target: torch.Tensor,
    kind: ReconstructionLoss = "mse",
    sigmoid: bool = True,
) -> torch.Tensor:
    """Per-example reconstruction error, summed over features: shape ``(batch,)``.

    Args:
        decoded: raw decoder output.
        target: the clean inputs.
        kind: ``"mse"`` (squared error of the reconstruction) or ``"bce"`` (binary
            cross-entropy, reading ``decoded`` as logits; needs ``sigmoid=True``).
        sigmoid: whether the reconstruction is ``sigmoid(decoded)`` (data in [0, 1]) or
            ``decoded`` itself.

    Example:
        >>> x = torch.rand(3, 1, 8, 8)
        >>> bool(reconstruction_loss(torch.logit(x, eps=1e-6), x).abs().max() < 1e-8)
        True
    """
    if kind == "mse":
        recon = torch.sigmoid(decoded) if sigmoid else decoded
        err = (recon - target).pow(2)
    elif kind == "bce":
        if not sigmoid:
            raise ValueError(
                "`loss='bce'` reads the decoder output as logits; it needs `sigmoid=True`."
            )
        err = F.binary_cross_entropy_with_logits(decoded, target, reduction="none")
    else:
        raise ValueError(f"`loss` must be 'mse' or 'bce', got {kind!r}.")
    return err.flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""Per-example :math:`\mathrm{KL}(\mathcal N(\mu, e^{\log\sigma^2}) \,\|\, \mathcal N(0, I))`.

    .. math:: \tfrac12 \textstyle\sum_j (\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1)

    Example:
        >>> gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4))
        tensor([0., 0.])
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(1)


def check_pretext_numbers(noise_level: float, mask_proportion: float) -> None:
    """Raise ``ValueError`` unless ``noise_level`` is finite and >= 0 and ``mask_proportion`` is
    finite and in [0, 1).

    Example:
        >>> check_pretext_numbers(0.3, 1.5)
        Traceback (most recent call last):
        ...
        ValueError: `mask_proportion` must be a share of features in [0, 1), got 1.5.
    """
    check_finite("noise_level", noise_level, minimum=0.0)
    check_finite("mask_proportion", mask_proportion, minimum=0.0)
    if not mask_proportion < 1.0:
        raise ValueError(
            f"`mask_proportion` must be a share of features in [0, 1), got {mask_proportion!r}."
        )


def _check_channels(channels: Sequence[int]) -> tuple[int, int]:
    if (
        isinstance(channels, (str, bytes))
        or not isinstance(channels, Sequence)
        or len(channels) != 2
        or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels)
    ):
        raise ValueError(
            f"`channels` must be two positive integers (one per convolution), got {channels!r}."
        )
    return int(channels[0]), int(channels[1])


def perturb(
    x: torch.Tensor,
    pretext: Pretext | None,
    noise_level: float = 0.3,
    mask_proportion: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The input a pretext task feeds the encoder; the target stays the clean ``x``.

    Args:
        x: clean inputs.
        pretext: ``None`` (plain reconstruction), ``"denoise"`` (add Gaussian noise of standard
            deviation ``noise_level``) or ``"mask"`` (zero each feature with probability
            ``mask_proportion``, an inpainting task).
        noise_level: noise standard deviation for ``"denoise"``.
        mask_proportion: masking probability for ``"mask"``.
        generator: optional random generator.

    Example:
        >>> x = torch.ones(2, 1, 8, 8)
        >>> masked = perturb(x, "mask", mask_proportion=0.5, generator=torch.Generator().manual_seed(0))
        >>> 0 < int((masked == 0).sum()) < 128
        True
    """
    check_pretext_numbers(noise_level, mask_proportion)
    if pretext is None:
        return x
    if pretext == "denoise":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + noise_level * noise
    if pretext == "mask":
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= mask_proportion
        return x * keep
    raise ValueError(f"`pretext` must be None, 'denoise' or 'mask', got {pretext!r}.")
