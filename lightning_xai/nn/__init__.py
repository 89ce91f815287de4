"""Layers and small reference networks (plain torch, no Lightning)."""

from lightning_xai.nn.autoencoders import DigitsDecoder, DigitsEncoder
from lightning_xai.nn.entropy_linear import EntropyLinear, entropy_layers, entropy_loss
from lightning_xai.nn.models import MLP, DigitsCNN
from lightning_xai.nn.text import TokenClassifier

__all__ = [
    "MLP",
    "DigitsCNN",
    "DigitsDecoder",
    "DigitsEncoder",
    "EntropyLinear",
    "TokenClassifier",
    "entropy_layers",
    "entropy_loss",
]
