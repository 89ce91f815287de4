"""Building blocks of concept models: the concept embedding layer, task heads, feature sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from lightning_xai.nn.entropy_linear import EntropyLinear
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["HEADS", "ConceptEmbedding", "HeadKind", "concept_head", "infer_features"]

HeadKind = Literal["linear", "mlp", "logic"]
#: The task heads a concept model can put on its concepts.
HEADS: tuple[str, ...] = ("linear", "mlp", "logic")


def _hidden(hidden: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if (
        isinstance(hidden, str)
        or not hidden
        or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden)
    ):
        raise ValueError(
            f"`hidden` must be a positive int or a non-empty sequence of them, got {hidden!r}; "
            "e.g. hidden=(16,)."
        )
    return tuple(hidden)


def concept_head(
    kind: HeadKind,
    in_features: int,
    n_classes: int,
    hidden: int | Sequence[int] = (16,),
    temperature: float = 0.6,
) -> nn.Module:
    """The task head of a concept model: concepts (or concept embeddings) in, class logits out.

    * ``"linear"``: ``Linear(in_features, n_classes)``, the most readable head;
    * ``"mlp"``: ``Linear → LeakyReLU → … → Linear(hidden[-1], n_classes)``;
    * ``"logic"``: an entropy-based logic explainer network (as in
      :class:`~lightning_xai.modules.LogicExplainer`): ``EntropyLinear(in_features, hidden[0],
      n_classes) → LeakyReLU → … → Linear(hidden[-1], 1)``, whose decisions read as one logic
      rule per class (:func:`~lightning_xai.logic.extract_rules`).

    Args:
        kind: ``"linear"``, ``"mlp"`` or ``"logic"``.
        in_features: number of inputs (concepts, or concepts times embedding size).
        n_classes: number of class logits.
        hidden: hidden widths (``"mlp"`` and ``"logic"``).
        temperature: relevance temperature of the logic head's :class:`EntropyLinear`.

    Example:
        >>> import torch
        >>> head = concept_head("logic", 5, 3, hidden=(8,))
        >>> head(torch.rand(2, 5)).shape
        torch.Size([2, 3])
    """
    if kind not in HEADS:
        raise ValueError(f"`head` must be one of {HEADS}, got {kind!r}.")
    check_positive_int("in_features", in_features)
    check_positive_int("n_classes", n_classes)
    if kind == "linear":
        return nn.Linear(in_features, n_classes)
    widths = _hidden(hidden)
    layers: list[nn.Module] = []
    if kind == "mlp":
        width = in_features
        for h in widths:
            layers += [nn.Linear(width, h), nn.LeakyReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)
    layers += [EntropyLinear(in_features, widths[0], n_classes, temperature), nn.LeakyReLU()]
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.LeakyReLU()]
    layers += [nn.Linear(widths[-1], 1), nn.Flatten(1)]
    return nn.Sequential(*layers)


def infer_features(encoder: nn.Module) -> int | None:
    """The width of ``encoder``'s output when its layers tell it: its own ``out_features``, else
    that of its last layer that has one (an ``nn.Linear``); ``None`` when nothing does.

    The guess is checked on the first batch (a mismatch raises an error naming
    ``in_features=``).

    Example:
        >>> infer_features(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()))
        32
        >>> infer_features(nn.Conv2d(1, 4, 3)) is None
        True
    """
    own = getattr(encoder, "out_features", None)
    if isinstance(own, int) and not isinstance(own, bool):
        return own
    found = None
    for module in encoder.modules():
        width = getattr(module, "out_features", None)
        if module is not encoder and isinstance(width, int) and not isinstance(width, bool):
            found = width
    return found


class ConceptEmbedding(nn.Module):
    r"""Concept embeddings (Espinosa Zarlenga et al., 2022): two embeddings per concept, mixed by
    the concept's probability.

    For features :math:`h`, concept :math:`i` has an "active" and an "inactive" embedding
    :math:`c_i^{\pm} = \mathrm{LeakyReLU}(W_i^{\pm} h + b_i^{\pm}) \in \mathbb{R}^m`, a probability
    :math:`p_i = \sigma(s([c_i^+, c_i^-]))` from a scoring layer :math:`s` shared by all concepts,
    and the mixed embedding

    .. math:: \hat c_i = p_i\, c_i^+ + (1 - p_i)\, c_i^- .

    An intervention replaces :math:`p_i` by the true concept value before mixing.

    Args:
        in_features: width of the features :math:`h`.
        n_concepts: number of concepts :math:`k`.
        embedding_size: width :math:`m` of each embedding.

    Shape:
        :meth:`embed`: ``(N, in_features)`` → logits ``(N, k)`` and embeddings ``(N, k, 2, m)``;
        :meth:`mix`: probabilities ``(N, k)`` and embeddings → ``(N, k * m)``.

    Example:
        >>> import torch
        >>> layer = ConceptEmbedding(6, n_concepts=3, embedding_size=4)
        >>> logits, embeddings = layer.embed(torch.rand(2, 6))
        >>> logits.shape, layer.mix(torch.sigmoid(logits), embeddings).shape
        (torch.Size([2, 3]), torch.Size([2, 12]))
    """

    def __init__(self, in_features: int, n_concepts: int, embedding_size: int = 16) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("n_concepts", n_concepts)
        check_positive_int("embedding_size", embedding_size)
        self.in_features = in_features
        self.n_concepts = n_concepts
        self.embedding_size = embedding_size
        self.embeddings = nn.Linear(in_features, n_concepts * 2 * embedding_size)
        self.activation = nn.LeakyReLU()
        self.score = nn.Linear(2 * embedding_size, 1)

    def embed(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Concept logits ``(N, k)`` and the embeddings ``(N, k, 2, m)`` (active, inactive)."""
        n = features.shape[0]
        emb = self.activation(self.embeddings(features))
        emb = emb.view(n, self.n_concepts, 2, self.embedding_size)
        logits = self.score(emb.flatten(2)).squeeze(-1)
        return logits, emb

    @staticmethod
    def mix(probabilities: Tensor, embeddings: Tensor) -> Tensor:
        """Mixed embeddings ``(N, k * m)`` for (possibly intervened) probabilities ``(N, k)``."""
        p = probabilities.to(embeddings.dtype).unsqueeze(-1)
        mixed = p * embeddings[:, :, 0] + (1 - p) * embeddings[:, :, 1]
        return mixed.flatten(1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, n_concepts={self.n_concepts}, "
            f"embedding_size={self.embedding_size}"
        )
