"""Concept embedding models (Espinosa Zarlenga et al., 2022): concept bottlenecks that keep a
black box's accuracy and stay intervenable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from lightning_xai.concepts.intervention import random_intervention
from lightning_xai.concepts.layers import HeadKind
from lightning_xai.concepts.networks import EmbeddingNetwork
from lightning_xai.logic.rule import Rule
from lightning_xai.modules._adapter import AdapterLike
from lightning_xai.modules.concept_bottleneck import ConceptsLike, TrainingMode, _ConceptModel
from lightning_xai.utilities.validation import check_finite

__all__ = ["ConceptEmbeddingModel"]


class ConceptEmbeddingModel(_ConceptModel):
    r"""Concept embedding model: each concept has an active and an inactive embedding, mixed by
    its predicted probability (:class:`~lightning_xai.concepts.ConceptEmbedding`); the head reads
    the ``k * embedding_size`` mixed embeddings.

    While training, each concept's probability is replaced by its true value with probability
    ``intervention_probability`` before mixing (RandInt, as in the CEM paper), so the model learns
    to use corrected concepts: test-time interventions then raise its accuracy more steeply.
    Everything else (loss, metrics, ``training_mode``, :meth:`predict_concepts`,
    :func:`~lightning_xai.concepts.intervene`, batches) is as in
    :class:`~lightning_xai.modules.ConceptBottleneckModel`. Its head reads embeddings rather
    than truth values, so there is no ``"logic"`` head and no :meth:`explain`: use a
    ConceptBottleneckModel for rules.

    Args:
        encoder: any module from the inputs to features.
        n_concepts: number of concepts ``k``.
        n_classes: number of task classes (>= 2).
        concept_names: concept names.
        class_names: class names.
        embedding_size: width of each concept embedding.
        intervention_probability: RandInt probability of correcting a concept while training.
        head: ``"linear"`` or ``"mlp"``.
        training_mode: ``"joint"`` (the CEM paper's), ``"sequential"`` or ``"independent"``.
        concept_loss_weight: weight of the concept loss (as in ConceptBottleneckModel; 5 keeps
            concept accuracy at 0.98-0.99 on the bundled digits, 1 at 0.97-0.98).
        in_features: width of the encoder's output, when it cannot be inferred.
        hidden: hidden widths of the ``"mlp"`` head.
        concept_epochs: epochs of the concept phase in ``"sequential"`` mode.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        concepts: where a batch keeps the concept annotations (see ConceptBottleneckModel).
        adapter: how to read the model inputs and task labels.

    Example:
        >>> import torch
        >>> cem = ConceptEmbeddingModel(
        ...     nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()), 5, 3, embedding_size=4
        ... )
        >>> cem(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_concepts: int,
        n_classes: int,
        concept_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        embedding_size: int = 16,
        intervention_probability: float = 0.25,
        head: HeadKind = "linear",
        training_mode: TrainingMode = "joint",
        concept_loss_weight: float = 5.0,
        in_features: int | None = None,
        hidden: int | Sequence[int] = (16,),
        concept_epochs: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        concepts: ConceptsLike = "auto",
        adapter: AdapterLike = None,
    ) -> None:
        super().__init__()
        check_finite("intervention_probability", intervention_probability, minimum=0.0)
        if intervention_probability > 1:
            raise ValueError(
                f"`intervention_probability` must be in [0, 1], got {intervention_probability!r}."
            )
        self.save_hyperparameters(ignore=["encoder", "adapter"])
        self._setup_common(
            n_concepts, n_classes, concept_names, class_names, head, training_mode,
            concept_loss_weight, concept_epochs, lr, weight_decay, concepts, adapter,
        )  # fmt: skip
        self.network = EmbeddingNetwork(
            encoder, n_concepts, n_classes, embedding_size, head, in_features, hidden
        )

    def explain(self, *args: Any, **kwargs: Any) -> list[Rule]:
        """Not available: the head of a concept embedding model reads embeddings, not concept
        truth values, so no rule over the concepts describes it."""
        raise TypeError(
            "ConceptEmbeddingModel has no logic rules: its head reads concept embeddings, not "
            "truth values. Use ConceptBottleneckModel(head='logic') to extract rules."
        )

    def _training_intervention(self, concepts: Tensor) -> Tensor | None:
        p = self.hparams.intervention_probability
        return random_intervention(concepts, p) if p > 0 else None
