"""Concept bottleneck and concept embedding networks (plain torch) and their concept loss.

Both networks follow one protocol, which :func:`~lightning_xai.concepts.intervene` and the
LightningModules rely on:

* ``concept_outputs(*inputs, true_concepts=None, intervention=None, **kwargs)`` runs the encoder
  once and returns :class:`ConceptOutputs` (concept logits, task logits and what the task head
  needs to be run again);
* ``task_outputs(outputs, true_concepts=None, intervention=None)`` re-runs only the task head,
  with the concepts marked by the Boolean ``intervention`` mask ``(N, k)`` replaced by
  ``true_concepts``, so an intervention curve costs one encoder pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_xai.concepts.layers import ConceptEmbedding, HeadKind, concept_head, infer_features
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["BottleneckNetwork", "ConceptOutputs", "EmbeddingNetwork", "concept_loss"]


@dataclass
class ConceptOutputs:
    """What one pass of a concept network produced.

    Attributes:
        concept_logits: ``(N, k)`` concept logits (before any intervention).
        task_logits: ``(N, n_classes)`` task logits (after the intervention, if any).
        concepts_used: ``(N, k)`` concept values the task head saw (probabilities, with
            intervened entries replaced by the true values).
        state: what :meth:`task_outputs` needs to run the head again (network-specific).
    """

    concept_logits: Tensor
    task_logits: Tensor
    concepts_used: Tensor
    state: Any = None

    @property
    def concept_probs(self) -> Tensor:
        """Predicted concept probabilities ``(N, k)``."""
        return torch.sigmoid(self.concept_logits)


def concept_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross-entropy between concept logits and 0/1 (or soft) concept targets;
    entries that are NaN (missing annotations) are left out.

    Example:
        >>> logits = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
        >>> round(float(concept_loss(logits, torch.tensor([[1.0, float("nan")], [1.0, 0.0]]))), 4)
        0.4621
    """
    targets = targets.to(logits.dtype)
    known = ~torch.isnan(targets)
    if bool(known.all()):
        return F.binary_cross_entropy_with_logits(logits, targets)
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], targets[known])


def _apply(probs: Tensor, true_concepts: Tensor | None, intervention: Tensor | None) -> Tensor:
    if intervention is None:
        return probs
    if true_concepts is None:
        raise ValueError(
            "An `intervention` mask was given without `true_concepts`; pass the true concept "
            "values the intervened entries are replaced by."
        )
    if true_concepts.shape != probs.shape:
        raise ValueError(
            f"`true_concepts` has shape {tuple(true_concepts.shape)}, but the model predicts "
            f"{tuple(probs.shape)} concepts; give one value per example and concept."
        )
    mask = intervention.to(probs.device).bool()
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    true = torch.nan_to_num(true_concepts.to(probs.device, probs.dtype), nan=0.5)
    return torch.where(mask.expand_as(probs), true, probs)


class _ConceptNetwork(nn.Module):
    """Encoder, concept layer and task head; subclasses define the middle."""

    def __init__(
        self, encoder: nn.Module, n_concepts: int, n_classes: int, in_features: int | None
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(
                f"`encoder` must be an nn.Module mapping inputs to features, got "
                f"{type(encoder).__name__}."
            )
        check_positive_int("n_concepts", n_concepts)
        check_positive_int("n_classes", n_classes)
        if in_features is None:
            in_features = infer_features(encoder)
            if in_features is None:
                raise ValueError(
                    f"Cannot tell the output width of `encoder` ({type(encoder).__name__}): it "
                    "has no linear layer. Pass `in_features=<width of its flattened output>`."
                )
        check_positive_int("in_features", in_features)
        self.encoder = encoder
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.in_features = in_features

    def features(self, *inputs: Any, **kwargs: Any) -> Tensor:
        """The encoder's output, flattened to ``(N, in_features)``."""
        h = self.encoder(*inputs, **kwargs)
        if not isinstance(h, Tensor):
            raise TypeError(
                f"`encoder` returned a {type(h).__name__}; a concept model needs a feature "
                "tensor. Wrap the encoder so that it returns one (e.g. the pooled output)."
            )
        h = h.flatten(1) if h.dim() > 2 else h
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(
                f"`encoder` returns features of shape {tuple(h.shape)}, but the concept layer "
                f"expects (N, {self.in_features}); pass `in_features={h.shape[-1] if h.dim() == 2 else h[0].numel()}`."
            )
        return h

    def concept_outputs(
        self,
        *inputs: Any,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
        **kwargs: Any,
    ) -> ConceptOutputs:
        """Encode ``inputs`` once; concept logits and task logits (with the intervention)."""
        raise NotImplementedError

    def task_outputs(
        self,
        outputs: ConceptOutputs,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
    ) -> Tensor:
        """Task logits from a previous pass, with concepts ``intervention`` set to the truth."""
        raise NotImplementedError

    def forward(self, *inputs: Any, **kwargs: Any) -> Tensor:
        """Task logits ``(N, n_classes)``."""
        return self.concept_outputs(*inputs, **kwargs).task_logits


class BottleneckNetwork(_ConceptNetwork):
    """Concept bottleneck network (Koh et al., 2020): ``encoder → Linear → sigmoid → head``.

    The head sees only the ``k`` concept probabilities, so correcting a concept changes the task
    prediction exactly as the head dictates.

    Args:
        encoder: any module from inputs to features.
        n_concepts: number of concepts ``k``.
        n_classes: number of task logits.
        head: ``"linear"``, ``"mlp"`` or ``"logic"`` (see
            :func:`~lightning_xai.concepts.concept_head`).
        in_features: width of the encoder's output (inferred from its last linear layer
            when ``None``).
        hidden: hidden widths of the ``"mlp"``/``"logic"`` heads.
        temperature: relevance temperature of the ``"logic"`` head.

    Example:
        >>> net = BottleneckNetwork(nn.Sequential(nn.Flatten(), nn.Linear(64, 16)), 5, 3)
        >>> out = net.concept_outputs(torch.rand(2, 1, 8, 8))
        >>> out.concept_probs.shape, out.task_logits.shape
        (torch.Size([2, 5]), torch.Size([2, 3]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_concepts: int,
        n_classes: int,
        head: HeadKind = "linear",
        in_features: int | None = None,
        hidden: int | Sequence[int] = (16,),
        temperature: float = 0.6,
    ) -> None:
        super().__init__(encoder, n_concepts, n_classes, in_features)
        self.concept_layer = nn.Linear(self.in_features, n_concepts)
        self.head = concept_head(head, n_concepts, n_classes, hidden, temperature)

    def concept_outputs(
        self,
        *inputs: Any,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
        **kwargs: Any,
    ) -> ConceptOutputs:
        logits = self.concept_layer(self.features(*inputs, **kwargs))
        probs = torch.sigmoid(logits)
        used = _apply(probs, true_concepts, intervention)
        return ConceptOutputs(logits, self.head(used), used, state=probs)

    def task_outputs(
        self,
        outputs: ConceptOutputs,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
    ) -> Tensor:
        return self.head(_apply(outputs.state, true_concepts, intervention))


class EmbeddingNetwork(_ConceptNetwork):
    """Concept embedding network (Espinosa Zarlenga et al., 2022): ``encoder →``
    :class:`~lightning_xai.concepts.ConceptEmbedding` ``→ head`` over the ``k * m`` mixed
    embeddings.

    Args:
        encoder: any module from inputs to features.
        n_concepts: number of concepts ``k``.
        n_classes: number of task logits.
        embedding_size: width ``m`` of each concept embedding.
        head: ``"linear"`` or ``"mlp"`` (a logic head needs truth values, not embeddings).
        in_features: width of the encoder's output (inferred when ``None``).
        hidden: hidden widths of the ``"mlp"`` head.

    Example:
        >>> net = EmbeddingNetwork(nn.Sequential(nn.Flatten(), nn.Linear(64, 16)), 5, 3, 4)
        >>> out = net.concept_outputs(torch.rand(2, 1, 8, 8))
        >>> out.concept_logits.shape, out.task_logits.shape
        (torch.Size([2, 5]), torch.Size([2, 3]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_concepts: int,
        n_classes: int,
        embedding_size: int = 16,
        head: HeadKind = "linear",
        in_features: int | None = None,
        hidden: int | Sequence[int] = (16,),
    ) -> None:
        super().__init__(encoder, n_concepts, n_classes, in_features)
        if head == "logic":
            raise ValueError(
                "`head='logic'` needs concept truth values as inputs, but a concept embedding "
                "model feeds its head embeddings; use head='linear' or 'mlp', or a "
                "ConceptBottleneckModel for a logic head."
            )
        self.embedding = ConceptEmbedding(self.in_features, n_concepts, embedding_size)
        self.head = concept_head(head, n_concepts * embedding_size, n_classes, hidden)

    def concept_outputs(
        self,
        *inputs: Any,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
        **kwargs: Any,
    ) -> ConceptOutputs:
        logits, embeddings = self.embedding.embed(self.features(*inputs, **kwargs))
        probs = torch.sigmoid(logits)
        used = _apply(probs, true_concepts, intervention)
        task = self.head(self.embedding.mix(used, embeddings))
        return ConceptOutputs(logits, task, used, state=(probs, embeddings))

    def task_outputs(
        self,
        outputs: ConceptOutputs,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
    ) -> Tensor:
        probs, embeddings = outputs.state
        used = _apply(probs, true_concepts, intervention)
        return self.head(self.embedding.mix(used, embeddings))
