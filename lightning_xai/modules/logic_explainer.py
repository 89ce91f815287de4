"""Logic explainer networks: concept-to-class models whose decisions read as logic rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from lightning_xai.logic.extraction import _TASKS, ExtractionOptions, Task, extract_rules
from lightning_xai.logic.rule import Rule, check_concepts
from lightning_xai.metrics.functional.logic import rule_accuracy, rule_fidelity
from lightning_xai.modules._adapter import (
    AdapterLike,
    attach_adapter,
    labelled_batch,
    unlabelled_scores,
)
from lightning_xai.nn.entropy_linear import EntropyLinear, entropy_loss
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.tensor_checks import (
    check_binary_targets,
    check_class_indices,
    check_not_empty,
    check_tensor,
)
from lightning_xai.utilities.validation import check_finite

__all__ = ["LogicExplainer", "MLPLogicExplainer"]


def _check_names(names: Sequence[str] | None, count: int, argument: str, prefix: str) -> list[str]:
    if names is None:
        return [f"{prefix}{i}" for i in range(count)]
    if isinstance(names, str) or len(names) != count or len(set(names)) != count:
        raise ValueError(
            f"`{argument}` must hold {count} distinct names, got {names!r}; pass one name per "
            f"column or leave it None for {prefix}0, {prefix}1, ..."
        )
    return [str(name) for name in names]


def _check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    if isinstance(hidden, int):
        hidden = (hidden,)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"`hidden` must be a non-empty sequence of positive ints, got {hidden!r}.")
    return tuple(hidden)


class _ConceptExplainer(pl.LightningModule):
    """Shared training loop and rule extraction of the logic explainers."""

    model: nn.Module

    def __init__(
        self,
        n_concepts: int,
        n_classes: int,
        concept_names: Sequence[str] | None,
        class_names: Sequence[str] | None,
        lr: float,
        task: Task,
    ) -> None:
        super().__init__()
        if task not in _TASKS:
            raise ValueError(f"`task` must be one of {_TASKS}, got {task!r}.")
        if isinstance(n_concepts, bool) or not isinstance(n_concepts, int) or n_concepts < 1:
            raise ValueError(f"`n_concepts` must be a positive int, got {n_concepts!r}.")
        smallest = 2 if task == "multiclass" else 1
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < smallest:
            raise ValueError(
                f"`n_classes` must be an int >= {smallest} for task={task!r}, got {n_classes!r}."
            )
        check_finite("lr", lr, minimum=0.0, exclusive=True)
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.task = task
        self.concept_names = _check_names(concept_names, n_concepts, "concept_names", "c")
        self.class_names = _check_names(class_names, n_classes, "class_names", "y")

        def accuracy() -> nn.Module:
            if task == "multiclass":
                return MulticlassAccuracy(n_classes, average="micro")
            return BinaryAccuracy()  # element-wise over (N, n_classes): micro multilabel accuracy

        self.metrics = nn.ModuleDict({f"{s}_acc": accuracy() for s in ("train", "val", "test")})

    def forward(self, concepts: Tensor) -> Tensor:
        """Class logits ``(N, n_classes)`` from concepts ``(N, n_concepts)``."""
        return self.model(concepts)

    def penalty(self) -> Tensor:
        """The sparsity regulariser added to the task loss."""
        raise NotImplementedError

    def _check_x(self, name: str, x: Any) -> Tensor:
        """Concepts ``(N, n_concepts)`` in [0, 1], finite and not empty."""
        x = check_concepts(name, x, self.n_concepts)
        check_not_empty(name, x)
        return x

    def _check_y(self, name: str, y: Any, rows: int, rows_of: str) -> Tensor:
        """Targets of this task for ``rows`` rows of ``rows_of``: class indices in
        ``[0, n_classes)`` (multiclass) or ``(N, n_classes)`` targets in [0, 1] (multilabel)."""
        y = check_tensor(name, y)
        if len(y) != rows:
            raise ValueError(
                f"`{name}` has {len(y)} rows but `{rows_of}` has {rows}; pass one target per row."
            )
        if self.task == "multiclass":
            if y.dim() != 1:
                raise ValueError(
                    f"`{name}` must be class indices of shape (N,) for task='multiclass', got "
                    f"shape {tuple(y.shape)}."
                )
            check_class_indices(name, y, self.n_classes)
        else:
            if tuple(y.shape[1:]) != (self.n_classes,):
                raise ValueError(
                    f"`{name}` must have shape (N, {self.n_classes}) for task='multilabel', got "
                    f"{tuple(y.shape)}."
                )
            check_binary_targets(name, y)
        return y

    def _task_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.task == "multiclass":
            return F.cross_entropy(logits, target.long())
        return F.binary_cross_entropy_with_logits(logits, target.float())

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        logits, target = labelled_batch(self, batch)
        if self.task == "multilabel":
            check_binary_targets("the batch's targets", target.detach())
        loss = self._task_loss(logits, target)
        if stage == "train":
            penalty = self.penalty()
            self.log("train/penalty", penalty, on_step=False, on_epoch=True)
            loss = loss + penalty
        accuracy = self.metrics[f"{stage}_acc"]
        if self.task == "multiclass":
            accuracy(logits.detach(), target)
        else:
            accuracy(torch.sigmoid(logits.detach()), target.long())
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=sync)
        self.log(f"{stage}/acc", accuracy, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self.predictions(unlabelled_scores(self, batch))

    def predictions(self, logits: Tensor) -> Tensor:
        """Decisions from logits: class indices (multiclass) or a Boolean matrix (multilabel)."""
        return logits.argmax(dim=1) if self.task == "multiclass" else logits > 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    def explain(
        self,
        x: Tensor,
        y: Tensor | None = None,
        *,
        eval_x: Tensor | None = None,
        eval_y: Tensor | None = None,
        options: ExtractionOptions | None = None,
    ) -> list[Rule]:
        """One rule per class, with accuracy and fidelity attached.

        Rules are chosen on ``(x, y)`` only (pass training and validation rows); their metrics
        are measured on ``(eval_x, eval_y)`` when given (e.g. test rows), else on ``(x, y)``.
        With ``y=None`` the rules explain the model's own predictions and carry no accuracy.

        Everything is checked before any work: concepts must be ``(N, n_concepts)``, non-empty,
        finite and in [0, 1] (values in between are true above ``options.concept_threshold``,
        stored on each rule as its ``threshold``); targets must be class indices in
        ``[0, n_classes)`` (multiclass) or ``(N, n_classes)`` values in [0, 1] (multilabel).
        Anything else raises a ``ValueError`` naming the argument.

        Args:
            x: ``(N, n_concepts)`` concepts the rules are extracted from.
            y: their targets: class indices (multiclass) or ``(N, n_classes)`` 0/1 (multilabel).
            eval_x: concepts the attached metrics are measured on.
            eval_y: their targets (accuracy is ``None`` without them).
            options: extraction settings (:class:`~lightning_xai.logic.ExtractionOptions`).
        """
        x = self._check_x("x", x)
        if y is not None:
            y = self._check_y("y", y, len(x), "x")
        if eval_x is None and eval_y is not None:
            raise ValueError(
                "`eval_y` was given without `eval_x`; pass the concepts it labels as `eval_x`, "
                "or leave both None to measure on `(x, y)`."
            )
        if eval_x is not None:
            eval_x = self._check_x("eval_x", eval_x)
            if eval_y is not None:
                eval_y = self._check_y("eval_y", eval_y, len(eval_x), "eval_x")
        x = x.detach().cpu().float()
        rules = extract_rules(
            self.model,
            x,
            None if y is None else y.detach().cpu(),
            task=self.task,
            concept_names=self.concept_names,
            class_names=self.class_names,
            options=options,
        )
        if eval_x is None:
            eval_x, eval_y = x, y
        eval_x = eval_x.detach().cpu().float()
        with eval_mode(self), torch.no_grad():
            decisions = self.predictions(self.model(eval_x.to(self.device))).cpu()
        n_classes = self.n_classes if self.task == "multiclass" else None
        return [
            rule.with_metrics(
                accuracy=None
                if eval_y is None
                else float(rule_accuracy(rule, eval_x, eval_y.cpu(), num_classes=n_classes)),
                fidelity=float(rule_fidelity(rule, eval_x, decisions)),
            )
            for rule in rules
        ]


class LogicExplainer(_ConceptExplainer):
    r"""Entropy-based logic explainer network: concepts in, class logits out, rules on demand.

    The network is an :class:`~lightning_xai.nn.EntropyLinear` concept layer (one small network
    per class, each attending to few concepts) followed by linear layers shared across classes:
    ``EntropyLinear(n_concepts, hidden[0], n_classes) → LeakyReLU → Linear(hidden[i],
    hidden[i+1]) → LeakyReLU → … → Linear(hidden[-1], 1)``. Training minimises

    .. math:: \mathcal{L} = \mathcal{L}_{task} + \lambda\, H(\alpha),

    with :math:`H(\alpha)` the entropy of the concept relevance and :math:`\lambda` the
    ``entropy_weight``. :meth:`explain` turns the trained network into one DNF rule per class.
    Every batch is checked first: empty batches, NaN or inf concepts and targets outside the
    classes (multiclass) or outside [0, 1] (multilabel) raise a ``ValueError``.

    Args:
        n_concepts: number of input concepts.
        n_classes: number of classes (outputs).
        concept_names: names of the concepts, used as rule symbols (default ``c0``, ``c1``, ...).
        class_names: names of the classes (default ``y0``, ``y1``, ...).
        hidden: hidden units of the concept layer and of the following layers.
        temperature: temperature of the relevance softmax.
        entropy_weight: weight :math:`\lambda` of the entropy regulariser.
        lr: AdamW learning rate.
        task: ``"multiclass"`` (integer targets, cross-entropy) or ``"multilabel"``
            (``(N, n_classes)`` 0/1 targets, binary cross-entropy per class).
        adapter: how to read batches (concepts are the explained input, targets the labels):
            a :class:`~lightning_xai.utilities.BatchAdapter`, a mapping of its arguments, or
            ``None`` for ``(concepts, target)`` tuples and dicts with ``labels``.

    Example:
        >>> import torch
        >>> module = LogicExplainer(n_concepts=4, n_classes=2)
        >>> module(torch.rand(3, 4)).shape
        torch.Size([3, 2])
        >>> [rule.class_name for rule in module.explain(torch.randint(0, 2, (32, 4)).float())]
        ['y0', 'y1']
    """

    def __init__(
        self,
        n_concepts: int,
        n_classes: int,
        concept_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        hidden: Sequence[int] = (10, 4),
        temperature: float = 0.6,
        entropy_weight: float = 1e-4,
        lr: float = 1e-2,
        task: Task = "multiclass",
        adapter: AdapterLike = None,
    ) -> None:
        super().__init__(n_concepts, n_classes, concept_names, class_names, lr, task)
        hidden = _check_hidden(hidden)
        check_finite("entropy_weight", entropy_weight, minimum=0.0)
        self.save_hyperparameters(ignore=["adapter"])
        self.adapter = attach_adapter(self, adapter)
        self._labels_checked = False
        layers: list[nn.Module] = [
            EntropyLinear(n_concepts, hidden[0], n_classes, temperature),
            nn.LeakyReLU(),
        ]
        for width_in, width_out in zip(hidden, hidden[1:]):
            layers += [nn.Linear(width_in, width_out), nn.LeakyReLU()]
        layers += [nn.Linear(hidden[-1], 1), nn.Flatten(1)]
        self.model = nn.Sequential(*layers)

    def penalty(self) -> Tensor:
        """``entropy_weight`` times the entropy of the concept relevance."""
        return self.hparams.entropy_weight * entropy_loss(self.model)


class MLPLogicExplainer(_ConceptExplainer):
    r"""A plain MLP explainer with an L1 penalty on its input weights.

    ``Linear(n_concepts, hidden[0]) → LeakyReLU → … → Linear(hidden[-1], n_classes)``, trained
    with :math:`\mathcal{L}_{task} + \lambda \lVert W_1 \rVert_1`. The L1 penalty drives the
    weights of unused concepts to zero; :meth:`explain` reads each class's concept relevance
    from the absolute weight paths (:func:`~lightning_xai.logic.concept_relevance`) and extracts
    rules exactly as :class:`LogicExplainer` does.

    Args:
        n_concepts: number of input concepts.
        n_classes: number of classes.
        concept_names: names of the concepts.
        class_names: names of the classes.
        hidden: hidden layer widths.
        l1_weight: weight :math:`\lambda` of the L1 penalty on the first layer's weights.
        lr: AdamW learning rate.
        task: ``"multiclass"`` or ``"multilabel"``.
        adapter: as in :class:`LogicExplainer`.

    Example:
        >>> import torch
        >>> module = MLPLogicExplainer(n_concepts=4, n_classes=3, task="multilabel")
        >>> module(torch.rand(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        n_concepts: int,
        n_classes: int,
        concept_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        hidden: Sequence[int] = (10, 10),
        l1_weight: float = 1e-3,
        lr: float = 1e-2,
        task: Task = "multiclass",
        adapter: AdapterLike = None,
    ) -> None:
        super().__init__(n_concepts, n_classes, concept_names, class_names, lr, task)
        hidden = _check_hidden(hidden)
        check_finite("l1_weight", l1_weight, minimum=0.0)
        self.save_hyperparameters(ignore=["adapter"])
        self.adapter = attach_adapter(self, adapter)
        self._labels_checked = False
        widths = (n_concepts, *hidden)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.LeakyReLU()]
        layers.append(nn.Linear(widths[-1], n_classes))
        self.model = nn.Sequential(*layers)

    def penalty(self) -> Tensor:
        """``l1_weight`` times the L1 norm of the first layer's weights."""
        return self.hparams.l1_weight * self.model[0].weight.abs().sum()
