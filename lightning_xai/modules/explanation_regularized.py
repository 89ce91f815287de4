"""A classifier trained to be "right for the right reasons" with an input-gradient penalty."""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.aggregation import MeanMetric
from typing_extensions import override

from lightning_xai.metrics.right_reasons import RightReasonsScore
from lightning_xai.modules.classifier import Classifier
from lightning_xai.penalties.masks import check_mask
from lightning_xai.penalties.right_reasons import GradientMethod, right_reasons_penalty
from lightning_xai.utilities.gradients import grad_enabled

__all__ = ["ExplanationRegularizedClassifier"]

_STAGES = ("train", "val", "test")
_EPOCH_TERMS = ("ce", "penalty", "right_reasons")


class ExplanationRegularizedClassifier(Classifier):
    r"""Cross-entropy plus a penalty on input gradients inside annotation masks.

    For a batch of :math:`N` inputs with masks :math:`A` (1 = the model must not rely on this
    feature) the loss is

    .. math::

        \mathcal{L} = \frac{1}{N} \sum_n \Big[ -\log p(y_n \mid x_n)
            + \lambda \sum_d \big( A_{nd}\, \tfrac{\partial}{\partial x_{nd}}
            \textstyle\sum_k \log p(k \mid x_n) \big)^2 \Big],

    i.e. the summed objective of Ross et al. (2017) divided by the batch size, so
    ``penalty_weight`` (:math:`\lambda`) has the same meaning as there and gradients under DDP
    and gradient accumulation equal those of one large batch. Weight decay comes from the
    optimizer. The input gradient is taken with ``create_graph=True`` (see
    :func:`~lightning_xai.penalties.right_reasons_penalty`), so the penalty trains.

    Batches are ``(x, y)`` (plain cross-entropy, no penalty) or ``(x, y, mask)``. Logged per
    stage (``train``/``val``/``test``): ``loss``, ``ce``, ``penalty`` (the unweighted mean of
    :math:`\sum_d (A g)^2`), ``acc`` and ``right_reasons``, the share of input-gradient mass
    inside the mask (:class:`~lightning_xai.metrics.RightReasonsScore`, lower is better).
    ``penalty`` and ``right_reasons`` appear only when batches carry masks; ``ce``, ``penalty``
    and ``right_reasons`` are accumulated in metrics and logged once per epoch. Validation and
    test take input gradients too, under ``no_grad`` or ``inference_mode``.

    Args:
        model: backbone returning logits ``(N, num_classes)``.
        num_classes: number of classes.
        penalty_weight: :math:`\lambda \ge 0`; 0 trains on the cross-entropy alone.
        lr: learning rate.
        weight_decay: weight decay, applied by the optimizer.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        gradient_method: how input gradients are taken (see
            :func:`~lightning_xai.penalties.log_prob_input_gradients`): ``"auto"`` warns when
            the backbone mixes samples (``BatchNorm`` in training mode), ``"per_sample"`` is
            exact in that case, ``"batch_sum"`` is the fast path.

    Example:
        >>> from lightning_xai.nn import MLP
        >>> module = ExplanationRegularizedClassifier(MLP(16, (8,), 3), num_classes=3)
        >>> x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
        >>> mask = torch.zeros(4, 1, 4, 4, dtype=torch.bool)
        >>> mask[..., 0, :] = True  # the first row is forbidden
        >>> out = module.compute_loss(x, y, mask)
        >>> sorted(out), bool(out["loss"] >= out["ce"])
        (['ce', 'input_gradients', 'logits', 'loss', 'penalty'], True)
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        penalty_weight: float = 10.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        gradient_method: GradientMethod = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"`model` must be an nn.Module returning logits, got {type(model).__name__}; "
                "pass e.g. `lightning_xai.nn.MLP(...)`."
            )
        if not isinstance(penalty_weight, (int, float)) or not penalty_weight >= 0:
            raise ValueError(
                f"`penalty_weight` must be a number >= 0, got {penalty_weight!r}; use 0 to "
                "train on the cross-entropy alone."
            )
        if gradient_method not in get_args(GradientMethod):
            raise ValueError(
                f"`gradient_method` must be one of {list(get_args(GradientMethod))}, "
                f"got {gradient_method!r}."
            )
        super().__init__(model, num_classes, lr, weight_decay, optimizer)
        self.penalty_weight = float(penalty_weight)
        self.gradient_method = gradient_method
        for stage in _STAGES:
            self.metrics[f"{stage}_ce"] = MeanMetric()
            self.metrics[f"{stage}_penalty"] = MeanMetric()
            self.metrics[f"{stage}_right_reasons"] = RightReasonsScore()

    def compute_loss(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Loss terms for one batch (differentiable; call under autograd to train).

        Returns a dict with ``loss``, ``ce``, ``logits`` and, when ``mask`` is given,
        ``penalty`` and ``input_gradients``.
        """
        if mask is None:
            logits = self(x)
            ce = F.cross_entropy(logits, y)
            return {"loss": ce, "ce": ce, "logits": logits}
        result = right_reasons_penalty(
            self.model,
            x,
            mask,
            reduction="mean",
            method=self.gradient_method,
            # a differentiable penalty only where it is trained
            create_graph=torch.is_grad_enabled() and self.training and self.penalty_weight > 0,
        )
        ce = F.nll_loss(result.log_probs, y)
        return {
            "loss": ce + self.penalty_weight * result.penalty,
            "ce": ce,
            "penalty": result.penalty,
            "logits": result.logits,
            "input_gradients": result.input_gradients,
        }

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        x, y = batch[0], batch[1]
        mask = batch[2] if len(batch) > 2 else None
        if mask is not None:
            check_mask(mask, x)  # clear errors before the expensive part
        if stage == "train" or mask is None:
            out = self.compute_loss(x, y, mask)
        else:
            # Lightning evaluates under no_grad/inference_mode; input gradients need autograd.
            with grad_enabled(x, y, mask) as (x, y, mask):
                out = {k: v.detach() for k, v in self.compute_loss(x, y, mask).items()}
        self._log_terms(out, y, mask, stage)
        return out["loss"]

    def _log_terms(
        self, out: dict[str, Tensor], y: Tensor, mask: Tensor | None, stage: str
    ) -> None:
        # Loss and accuracy are logged like the plain Classifier. The other terms go into
        # metrics (cheap per-step updates, synchronised across processes) that are logged once
        # per epoch: a `self.log` call costs more than the penalty itself on small models.
        kwargs: dict[str, Any] = {"on_step": False, "on_epoch": True, "batch_size": len(y)}
        self.log(f"{stage}/loss", out["loss"], prog_bar=True, sync_dist=stage != "train", **kwargs)
        acc = self.metrics[f"{stage}_acc"]
        acc.update(out["logits"].detach(), y)
        self.log(f"{stage}/acc", acc, prog_bar=True, **kwargs)
        self.metrics[f"{stage}_ce"].update(out["ce"].detach(), len(y))
        if mask is not None:
            self.metrics[f"{stage}_penalty"].update(out["penalty"].detach(), len(y))
            self.metrics[f"{stage}_right_reasons"].update(out["input_gradients"].detach(), mask)

    def _log_epoch_terms(self, stage: str) -> None:
        for name in _EPOCH_TERMS:
            metric = self.metrics[f"{stage}_{name}"]
            if metric.update_called:
                # compute() syncs the processes; sync_dist then averages equal values (a no-op)
                self.log(f"{stage}/{name}", metric.compute(), sync_dist=True)
            metric.reset()

    @override
    def on_train_epoch_end(self) -> None:
        self._log_epoch_terms("train")

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_epoch_terms("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_epoch_terms("test")
