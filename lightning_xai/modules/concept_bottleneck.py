"""Concept bottleneck models: inputs → named concepts → task, trained jointly, sequentially or
independently, with concept metrics in every stage and logic rules from a logic head."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassAccuracy

from lightning_xai.concepts.layers import HEADS, HeadKind
from lightning_xai.concepts.networks import BottleneckNetwork, ConceptOutputs, concept_loss
from lightning_xai.logic.extraction import ExtractionOptions, extract_rules
from lightning_xai.logic.rule import Rule
from lightning_xai.metrics.functional.logic import rule_accuracy, rule_fidelity
from lightning_xai.modules._adapter import AdapterLike, attach_adapter, without_labels
from lightning_xai.modules.logic_explainer import _check_names
from lightning_xai.nn.entropy_linear import entropy_layers, entropy_loss
from lightning_xai.utilities.batches import BatchAdapter, check_labels, resolve_callable
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.validation import check_finite, check_positive_int

__all__ = ["ConceptBottleneckModel", "TrainingMode"]

TrainingMode = Literal["joint", "sequential", "independent"]
_MODES = ("joint", "sequential", "independent")
ConceptsLike = int | str | Callable[..., Any]


def _detached(outputs: ConceptOutputs) -> ConceptOutputs:
    state = outputs.state
    state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    return ConceptOutputs(
        outputs.concept_logits.detach(), outputs.task_logits, outputs.concepts_used, state
    )


class _ConceptModel(pl.LightningModule):
    """Training loop, metrics, concept reading and rules shared by the concept models."""

    network: nn.Module

    def _setup_common(
        self,
        n_concepts: int,
        n_classes: int,
        concept_names: Sequence[str] | None,
        class_names: Sequence[str] | None,
        head: str,
        training_mode: str,
        concept_loss_weight: float,
        concept_epochs: int | None,
        lr: float,
        weight_decay: float,
        concepts: ConceptsLike,
        adapter: AdapterLike,
    ) -> None:
        check_positive_int("n_concepts", n_concepts)
        check_positive_int("n_classes", n_classes)
        if n_classes < 2:
            raise ValueError(
                f"`n_classes` must be >= 2 (class logits with cross-entropy), got {n_classes}; "
                "a yes/no task has n_classes=2."
            )
        if head not in HEADS:
            raise ValueError(f"`head` must be one of {HEADS}, got {head!r}.")
        if training_mode not in _MODES:
            raise ValueError(
                f"`training_mode` must be one of {_MODES}, got {training_mode!r} (Koh et al. "
                "2020: joint trains everything at once; sequential trains the concepts, then the "
                "head on predicted concepts; independent trains the head on true concepts)."
            )
        check_finite("concept_loss_weight", concept_loss_weight, minimum=0.0)
        check_positive_int("concept_epochs", concept_epochs, allow_none=True)
        check_finite("lr", lr, minimum=0.0, exclusive=True)
        check_finite("weight_decay", weight_decay, minimum=0.0)
        if isinstance(concepts, bool) or not (
            isinstance(concepts, (int, str)) or callable(concepts)
        ):
            raise ValueError(
                f"`concepts` must be an index (tuple batches), a key (dict batches), 'auto' or a "
                f"callable batch -> (N, k) tensor (or its dotted import path), got {concepts!r}."
            )
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.concept_names = _check_names(concept_names, n_concepts, "concept_names", "c")
        self.class_names = _check_names(class_names, n_classes, "class_names", "y")
        self.concepts = resolve_callable(concepts)
        self.adapter = attach_adapter(self, adapter)
        self._labels_checked = False
        self._concepts_checked = False
        self._concept_epochs = concept_epochs
        self.metrics = nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.metrics[f"{stage}_acc"] = MulticlassAccuracy(n_classes, average="micro")
            # exact AUC: keeping the epoch's probabilities costs far less per step than binning
            # them (inputs are built here, so torchmetrics need not validate them)
            self.metrics[f"{stage}_concept_acc"] = BinaryAccuracy(validate_args=False)
            self.metrics[f"{stage}_concept_auc"] = BinaryAUROC(validate_args=False)
            for key in ("loss", "task_loss", "concept_loss"):
                self.metrics[f"{stage}_{key}"] = MeanMetric()

    # ------------------------------------------------------------------ the model
    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Tensor:
        """Task logits ``(N, n_classes)`` for inputs ``x`` (further arguments go to the
        encoder)."""
        return self.network.concept_outputs(x, *args, **kwargs).task_logits

    def predict_concepts(self, x: Any, *args: Any, **kwargs: Any) -> Tensor:
        """Concept probabilities ``(N, n_concepts)`` for inputs ``x``."""
        return torch.sigmoid(self.network.concept_outputs(x, *args, **kwargs).concept_logits)

    def concept_outputs(
        self,
        *inputs: Any,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
        **kwargs: Any,
    ) -> ConceptOutputs:
        """One pass: concept logits and task logits, with the concepts marked by the Boolean
        ``intervention`` mask ``(N, k)`` set to ``true_concepts`` (see
        :func:`~lightning_xai.concepts.intervene`)."""
        return self.network.concept_outputs(
            *inputs, true_concepts=true_concepts, intervention=intervention, **kwargs
        )

    def task_outputs(
        self,
        outputs: ConceptOutputs,
        true_concepts: Tensor | None = None,
        intervention: Tensor | None = None,
    ) -> Tensor:
        """Task logits of a previous :meth:`concept_outputs` pass, re-run after an
        intervention (the encoder is not run again)."""
        return self.network.task_outputs(outputs, true_concepts, intervention)

    @property
    def head(self) -> nn.Module:
        """The task head (concepts → class logits); with ``head="logic"`` an explainer network
        whose first layer is an :class:`~lightning_xai.nn.EntropyLinear`."""
        return self.network.head

    # ------------------------------------------------------------------ batches
    def concept_reader(self, batch: Any) -> BatchAdapter:
        """A :class:`BatchAdapter` whose labels are the concept annotations of ``batch``."""
        where = self.concepts
        if where == "auto":
            where = "concepts" if isinstance(batch, Mapping) else 1
        return BatchAdapter(inputs=self.adapter.inputs, labels=where, forward_kwargs=None)

    def split_batch(self, batch: Any) -> tuple[Any, Tensor, Tensor | None]:
        """``(adapted batch, concepts, labels)``: the model's arguments (read by ``adapter``),
        the concept annotations (read by ``concepts``) and the task labels (``None`` when the
        batch has none)."""
        split = self.adapter.split(batch, self)
        try:
            concepts = self.concept_reader(batch).split(batch).labels
        except ValueError as err:
            raise ValueError(
                f"{type(self).__name__} cannot find the concept annotations in the batch "
                f"(`concepts={self.concepts!r}`): {err}"
            ) from None
        if concepts is None:
            raise ValueError(
                f"{type(self).__name__} found no concept annotations (`concepts="
                f"{self.concepts!r}`); point `concepts=` at the (N, {self.n_concepts}) tensor."
            )
        if not self._concepts_checked:
            self._check_concepts(concepts, len(split))
            self._concepts_checked = True
        return split, concepts, split.labels

    def _check_concepts(self, concepts: Tensor, n: int) -> None:
        expected = (n, self.n_concepts)
        if tuple(concepts.shape) != expected:
            raise ValueError(
                f"The concept annotations (`concepts={self.concepts!r}`) have shape "
                f"{tuple(concepts.shape)}, expected {expected}: one 0/1 value per example and "
                "concept. Point `concepts=` at the concept tensor, or set `n_concepts`."
            )
        if not concepts.is_floating_point():
            raise ValueError(
                f"The concept annotations are {str(concepts.dtype).replace('torch.', '')}; they "
                "must be floats in [0, 1] (NaN for missing). Convert them with `.float()` in the "
                "dataset."
            )
        known = concepts[~torch.isnan(concepts)]
        if known.numel() and (float(known.min()) < 0 or float(known.max()) > 1):
            raise ValueError(
                f"The concept annotations hold values in [{float(known.min()):.3g}, "
                f"{float(known.max()):.3g}]; they must be 0/1 (or probabilities) with NaN for "
                "missing. Check `concepts=`."
            )

    # ------------------------------------------------------------------ training
    def concept_epochs(self) -> int:
        """Epochs of the concept phase of ``training_mode="sequential"``."""
        if self._concept_epochs is not None:
            return self._concept_epochs
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is None or max_epochs < 2:
            raise ValueError(
                f"training_mode='sequential' needs `concept_epochs=` (the epochs spent training "
                f"the concepts before the head) when the trainer's max_epochs is {max_epochs!r}; "
                "set it, or max_epochs >= 2 (half of them go to the concepts)."
            )
        return max(1, max_epochs // 2)

    def on_fit_start(self) -> None:
        if self.hparams.training_mode == "sequential":
            self.concept_epochs()  # fail before the first step

    def _training_intervention(self, concepts: Tensor) -> Tensor | None:
        return None

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        split, concepts, labels = self.split_batch(batch)
        if labels is None:
            raise ValueError(
                f"{type(self).__name__} trains on task labels, but its adapter found none in "
                "the batch; point `adapter=BatchAdapter(labels=<index or key>)` at them."
            )
        args, kwargs = split.arguments()
        training = stage == "train"
        mode = self.hparams.training_mode
        intervention = self._training_intervention(concepts) if training else None
        out = self.network.concept_outputs(
            *args,
            true_concepts=concepts if intervention is not None else None,
            intervention=intervention,
            **kwargs,
        )
        if not self._labels_checked:
            check_labels(labels, out.task_logits, source="the batch's labels")
            self._labels_checked = True
        c_loss = concept_loss(out.concept_logits, concepts)
        task_logits = out.task_logits
        use_task, use_concepts = True, True
        if training and mode == "independent":
            full = torch.ones_like(concepts, dtype=torch.bool) & ~torch.isnan(concepts)
            task_logits = self.network.task_outputs(_detached(out), concepts, full)
        elif training and mode == "sequential":
            if self.current_epoch < self.concept_epochs():
                use_task = False
            else:
                use_concepts = False
                task_logits = self.network.task_outputs(_detached(out))
        t_loss = F.cross_entropy(task_logits, labels.long())
        weight = self.hparams.concept_loss_weight
        loss = (t_loss if use_task else 0.0) + (weight * c_loss if use_concepts else 0.0)
        if training and use_task and entropy_layers(self.network.head):
            penalty = self.hparams.entropy_weight * entropy_loss(self.network.head)
            self.log("train/penalty", penalty, on_step=False, on_epoch=True)
            loss = loss + penalty
        self._log_metrics(stage, loss, t_loss, c_loss, out, task_logits, concepts, labels)
        return loss

    def _log_metrics(
        self,
        stage: str,
        loss: Tensor,
        t_loss: Tensor,
        c_loss: Tensor,
        out: ConceptOutputs,
        task_logits: Tensor,
        concepts: Tensor,
        labels: Tensor,
    ) -> None:
        known = ~torch.isnan(concepts)
        probs = out.concept_probs.detach()[known]
        truth = concepts[known].round().long()
        # updates only (no self.log per step, which costs more than the step on small models):
        # the epoch values are computed once in `_log_epoch_metrics`
        self.metrics[f"{stage}_acc"].update(task_logits.detach(), labels.long())
        if probs.numel():
            self.metrics[f"{stage}_concept_acc"].update(probs, truth)
            self.metrics[f"{stage}_concept_auc"].update(probs, truth)
        n = len(labels)
        for key, value in (("loss", loss), ("task_loss", t_loss), ("concept_loss", c_loss)):
            self.metrics[f"{stage}_{key}"].update(torch.as_tensor(value).detach(), n)

    def _log_epoch_metrics(self, stage: str) -> None:
        """The epoch's task accuracy, concept accuracy and AUC and mean losses (synchronised
        across processes by torchmetrics), then reset."""
        for key in ("loss", "task_loss", "concept_loss", "acc", "concept_acc", "concept_auc"):
            metric = self.metrics[f"{stage}_{key}"]
            if metric.update_count:
                self.log(f"{stage}/{key}", metric.compute(), prog_bar=key in ("loss", "acc"))
            metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """Predicted classes and concept probabilities of a batch."""
        split = without_labels(self.adapter).split(batch, self)
        args, kwargs = split.arguments()
        out = self.network.concept_outputs(*args, **kwargs)
        return {"classes": out.task_logits.argmax(dim=1), "concepts": out.concept_probs}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

    # ------------------------------------------------------------------ rules
    def _predicted_concepts(self, x: Any, batch_size: int = 1024) -> Tensor:
        inputs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        n = len(inputs[0])
        parts = []
        with eval_mode(self), torch.no_grad():
            for start in range(0, n, batch_size):
                chunk = [t[start : start + batch_size].to(self.device) for t in inputs]
                parts.append(self.predict_concepts(*chunk).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, self.n_concepts)

    def explain(
        self,
        x: Any,
        y: Tensor | None = None,
        *,
        eval_x: Any | None = None,
        eval_y: Tensor | None = None,
        options: ExtractionOptions | None = None,
        concepts_given: bool = False,
    ) -> list[Rule]:
        """One logic rule per class over the concept names, read from the task head.

        The rules are chosen on the model's *predicted* concepts of the inputs ``x`` (with
        ``concepts_given=True``, ``x`` and ``eval_x`` already hold concept values: predicted
        probabilities, or the true annotations) and labels ``y`` (``None``: the rules explain
        the model's own decisions); accuracy (against ``eval_y``) and fidelity (to the head's
        decisions) are measured on ``eval_x`` (default ``x``) by :meth:`score_rules`. Any head
        works; a ``"logic"`` head is trained to be explained this way. The signature is that of
        :meth:`LogicExplainer.explain <lightning_xai.modules.LogicExplainer.explain>`;
        :class:`~lightning_xai.callbacks.LogicRuleLogger` calls it with predicted concepts and
        scores the rules on the true concepts as well.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> cbm = ConceptBottleneckModel(nn.Linear(4, 8), 3, 2, head="logic", hidden=(4,))
            >>> rules = cbm.explain(torch.rand(16, 4))
            >>> [rule.class_name for rule in rules], 0.0 <= rules[0].fidelity <= 1.0
            (['y0', 'y1'], True)
        """
        chosen_on = x.detach().cpu().float() if concepts_given else self._predicted_concepts(x)
        rules = extract_rules(
            self.network.head,
            chosen_on,
            None if y is None else y.detach().cpu(),
            concept_names=self.concept_names,
            class_names=self.class_names,
            options=options,
        )
        if eval_x is None:
            eval_c, eval_y = chosen_on, y
        elif concepts_given:
            eval_c = eval_x.detach().cpu().float()
        else:
            eval_c = self._predicted_concepts(eval_x)
        return self.score_rules(rules, eval_c, eval_y)

    def score_rules(
        self, rules: Sequence[Rule], concepts: Tensor, labels: Tensor | None = None
    ) -> list[Rule]:
        """Copies of ``rules`` with their accuracy (against ``labels``; ``None`` when no labels
        are given) and fidelity (agreement with the head's decisions on the same concept
        values) measured on ``concepts`` ``(N, k)``: predicted probabilities, or the true
        annotations, so that a rule can be judged on what the model saw and on the truth.
        Rows with a missing (NaN) annotation are left out.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from lightning_xai.logic import Rule
            >>> cbm = ConceptBottleneckModel(nn.Linear(4, 8), 2, 2, concept_names=["a", "b"])
            >>> with torch.no_grad():
            ...     _ = cbm.head.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
            ...     _ = cbm.head.bias.zero_()
            >>> truth = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
            >>> rule = Rule.from_string("a", ["a", "b"], class_index=1)
            >>> scored = cbm.score_rules([rule], truth, torch.tensor([1, 0, 0]))[0]
            >>> round(scored.accuracy, 3), scored.fidelity
            (0.667, 1.0)
        """
        concepts = concepts.detach().cpu().float()
        if concepts.dim() != 2 or concepts.shape[1] != self.n_concepts:
            raise ValueError(
                f"`concepts` must have shape (N, {self.n_concepts}), got {tuple(concepts.shape)}."
            )
        complete = ~torch.isnan(concepts).any(dim=1)
        concepts = concepts[complete]
        if labels is not None:
            labels = labels.detach().cpu()
            if labels.shape[0] != complete.shape[0]:
                raise ValueError(
                    f"`labels` has {labels.shape[0]} rows for {complete.shape[0]} rows of "
                    "concepts; give one label per row."
                )
            labels = labels[complete]
        with eval_mode(self), torch.no_grad():
            decisions = self.network.head(concepts.to(self.device)).argmax(dim=1).cpu()
        return [
            rule.with_metrics(
                accuracy=None if labels is None else float(rule_accuracy(rule, concepts, labels)),
                fidelity=float(rule_fidelity(rule, concepts, decisions)),
            )
            for rule in rules
        ]


class ConceptBottleneckModel(_ConceptModel):
    r"""Concept bottleneck model (Koh et al., 2020): ``encoder → k concept probabilities →
    head → class logits``, trained on batches ``(x, concepts, y)``.

    The loss is :math:`\mathcal{L}_{task} + \lambda\,\mathcal{L}_{concepts}` (binary
    cross-entropy per concept, NaN annotations left out) with :math:`\lambda` the
    ``concept_loss_weight``; ``training_mode`` decides what the head sees while training:

    * ``"joint"``: the predicted concept probabilities, everything trained at once;
    * ``"sequential"``: ``concept_epochs`` epochs of concept loss only, then the head alone on
      the (detached) predicted probabilities;
    * ``"independent"``: the head on the true concepts, the encoder on the concept loss; at
      evaluation the head reads predicted concepts.

    Logs ``{train,val,test}/acc`` (task), ``concept_acc``, ``concept_auc`` (over all concept
    entries), ``loss``, ``task_loss`` and ``concept_loss``. :meth:`predict_concepts` gives the
    concept probabilities, :func:`~lightning_xai.concepts.intervene` corrects them, and
    :meth:`explain` reads one logic rule per class from the head (with ``head="logic"``, an
    entropy-regularised explainer network, ``entropy_weight`` times its entropy is added).

    Args:
        encoder: any module from the inputs to features (e.g. a CNN without its last layer).
        n_concepts: number of concepts ``k``.
        n_classes: number of task classes (>= 2).
        concept_names: concept names (rule symbols), default ``c0``, ``c1``, …
        class_names: class names, default ``y0``, ``y1``, …
        head: ``"linear"``, ``"mlp"`` or ``"logic"``.
        training_mode: ``"joint"``, ``"sequential"`` or ``"independent"``.
        concept_loss_weight: :math:`\lambda`. In joint training a small :math:`\lambda` lets
            the head read information from soft probabilities (0.3 rather than 0), which a
            corrected 0/1 concept destroys: on the bundled digits, :math:`\lambda = 1` leaves
            concept accuracy at 0.90 and every-concept-corrected accuracy at 0.88, while the
            default 5 gives 0.99 and 1.00 at the same task accuracy
            (``benchmarks/concepts.py``).
        in_features: width of the encoder's output, when its last linear layer does not tell.
        hidden: hidden widths of the ``"mlp"`` and ``"logic"`` heads.
        temperature: relevance temperature of the ``"logic"`` head.
        entropy_weight: weight of the ``"logic"`` head's entropy regulariser.
        concept_epochs: epochs of the concept phase in ``"sequential"`` mode (default: half of
            the trainer's ``max_epochs``).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        concepts: where a batch keeps the concept annotations: an index (tuples), a key
            (dicts), a callable ``batch -> (N, k)`` tensor or its dotted import path;
            ``"auto"`` is ``batch[1]`` for tuples and ``batch["concepts"]`` for dicts.
        adapter: how to read the model inputs and task labels
            (:class:`~lightning_xai.utilities.BatchAdapter`, a mapping of its arguments, or
            ``None``: ``(x, concepts, y)`` tuples, dicts with ``labels``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> cbm = ConceptBottleneckModel(
        ...     nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()), n_concepts=5, n_classes=2
        ... )
        >>> x = torch.rand(3, 1, 8, 8)
        >>> cbm(x).shape, cbm.predict_concepts(x).shape
        (torch.Size([3, 2]), torch.Size([3, 5]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_concepts: int,
        n_classes: int,
        concept_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        head: HeadKind = "linear",
        training_mode: TrainingMode = "joint",
        concept_loss_weight: float = 5.0,
        in_features: int | None = None,
        hidden: int | Sequence[int] = (16,),
        temperature: float = 0.6,
        entropy_weight: float = 1e-4,
        concept_epochs: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        concepts: ConceptsLike = "auto",
        adapter: AdapterLike = None,
    ) -> None:
        super().__init__()
        check_finite("entropy_weight", entropy_weight, minimum=0.0)
        self.save_hyperparameters(ignore=["encoder", "adapter"])
        self._setup_common(
            n_concepts, n_classes, concept_names, class_names, head, training_mode,
            concept_loss_weight, concept_epochs, lr, weight_decay, concepts, adapter,
        )  # fmt: skip
        self.network = BottleneckNetwork(
            encoder, n_concepts, n_classes, head, in_features, hidden, temperature
        )
