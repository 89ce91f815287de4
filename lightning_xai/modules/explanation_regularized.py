"""A classifier trained to be "right for the right reasons" with an input-gradient penalty."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.aggregation import MeanMetric
from typing_extensions import override

from lightning_xai.metrics.right_reasons import RightReasonsScore
from lightning_xai.modules._adapter import AdapterLike
from lightning_xai.modules.classifier import Classifier
from lightning_xai.penalties.right_reasons import (
    GradientMethod,
    resolve_layer,
    right_reasons_penalty,
)
from lightning_xai.utilities.batches import (
    AdaptedBatch,
    BatchAdapter,
    _describe,
    check_labels,
    resolve_callable,
)
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

    Batches are read by a :class:`~lightning_xai.utilities.BatchAdapter` (``adapter=``): ``(x, y)``
    (plain cross-entropy, no penalty), ``(x, y, mask)``, or dicts such as ``{"input_ids",
    "attention_mask", "labels", "mask"}`` whose other entries (the attention mask) are passed to
    the backbone by name. ``mask=`` says where the annotation mask is. For token ids, ``layer=``
    (the embedding) moves the gradient to that layer's output, with one mask value per token
    ``(N, T)`` broadcast over the embedding dimension. Logged per
    stage (``train``/``val``/``test``): ``loss``, ``ce``, ``penalty`` (the unweighted mean of
    :math:`\sum_d (A g)^2`), ``acc`` and ``right_reasons``, the share of input-gradient mass
    inside the mask (:class:`~lightning_xai.metrics.RightReasonsScore`, lower is better).
    ``penalty`` and ``right_reasons`` appear only when batches carry masks; ``ce``, ``penalty``
    and ``right_reasons`` are accumulated in metrics and logged once per epoch. Validation and
    test take input gradients too, under ``no_grad`` or ``inference_mode``. The labels of the
    first batch are checked against the class scores before they are used.

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
        layer: penalise the gradient at this layer's output instead of the inputs: a module path
            in ``model`` (``"embedding"``, ``"bert.embeddings.word_embeddings"``) or the module;
            needed for token ids.
        adapter: how batches are read and the backbone called: a
            :class:`~lightning_xai.utilities.BatchAdapter`, a mapping of its arguments (YAML), or
            ``None`` for ``BatchAdapter()``, which infers tensors, ``(x, y, ...)`` tuples and
            HuggingFace-style dicts.
        mask: where the annotation mask is in a batch: an index, a key, or a callable
            ``batch -> mask`` (or its dotted import path, for YAML). ``None``: the third entry
            of a tuple batch (unless the adapter uses it), or the key ``"mask"`` of a dict.

    Example:
        >>> from lightning_xai.nn import MLP
        >>> module = ExplanationRegularizedClassifier(MLP(16, (8,), 3), num_classes=3)
        >>> x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
        >>> mask = torch.zeros(4, 1, 4, 4, dtype=torch.bool)
        >>> mask[..., 0, :] = True  # the first row is forbidden
        >>> out = module.compute_loss(x, y, mask)
        >>> sorted(out), bool(out["loss"] >= out["ce"])
        (['ce', 'input_gradients', 'logits', 'loss', 'mask', 'penalty'], True)

        Token ids in dict batches, penalised at the embedding:

        >>> from lightning_xai.data import keyword_sentences
        >>> from lightning_xai.nn import TokenClassifier
        >>> text = ExplanationRegularizedClassifier(TokenClassifier(29), 2, layer="embedding")
        >>> batch = keyword_sentences(4)  # input_ids, attention_mask, labels, mask, rationale
        >>> out = text.compute_loss(batch, mask=batch["mask"])
        >>> out["input_gradients"].shape  # (N, T, embedding_dim)
        torch.Size([4, 12, 16])
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
        layer: str | nn.Module | None = None,
        adapter: AdapterLike = None,
        mask: int | str | Callable[[Any], Tensor | None] | None = None,
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
        mask_spec = resolve_callable(mask)
        if isinstance(mask_spec, bool) or not (
            mask_spec is None or callable(mask_spec) or isinstance(mask_spec, (int, str))
        ):
            raise TypeError(
                f"`mask` must be None (the third entry of a tuple batch, or the key 'mask' of a "
                f"dict batch), an index, a key or a callable batch -> mask (or its dotted import "
                f"path), got {mask!r}."
            )
        if layer is not None:
            resolve_layer(model, layer)  # fail now, naming the model's embedding modules
        # The base class builds `self.adapter` and records it in the hyperparameters.
        super().__init__(model, num_classes, lr, weight_decay, optimizer, adapter=adapter)
        if callable(layer) or callable(mask):
            # A module-valued layer or a mask function is no hyperparameter (checkpoints are
            # loaded with weights_only=True): pass it again to `load_from_checkpoint`.
            recorded = self.hparams.get("adapter")
            ignore = ["model", "adapter"]
            ignore += [n for n, v in (("layer", layer), ("mask", mask)) if callable(v)]
            self.save_hyperparameters(ignore=ignore)
            self.hparams["adapter"] = recorded
        self.penalty_weight = float(penalty_weight)
        self.gradient_method = gradient_method
        self.layer = layer
        self.mask = mask_spec
        for stage in _STAGES:
            self.metrics[f"{stage}_ce"] = MeanMetric()
            self.metrics[f"{stage}_penalty"] = MeanMetric()
            self.metrics[f"{stage}_right_reasons"] = RightReasonsScore()

    #: The backbone alone (what attribution methods explain), with the backbone's signature so
    #: that a BatchAdapter given this module passes the backbone's arguments (attention_mask).
    def mask_of(self, batch: Any, adapted: AdaptedBatch | None = None) -> Tensor | None:
        """The annotation mask of ``batch`` as ``mask=`` says, or ``None`` when it has none.

        The default takes the third entry of a tuple batch that the adapter does not use as an
        input, an extra forward argument or the labels, or the key ``"mask"`` of a dict batch.
        """
        spec = self.mask
        if callable(spec):
            return spec(batch)
        if spec is None:
            if isinstance(batch, Mapping):
                return batch.get("mask")
            if isinstance(batch, (tuple, list)) and len(batch) > 2:
                adapted = adapted or self.adapter.split(batch, self.model)
                used = (*adapted.inputs, *adapted.extras, adapted.labels)
                return None if any(batch[2] is t for t in used) else batch[2]
            return None
        try:
            return batch[spec]
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                f"`mask={spec!r}` is not in the batch ({_describe(batch)}); point `mask=` at "
                "the annotation mask (an index, a key or a callable batch -> mask)."
            ) from None

    def compute_loss(
        self, x: Tensor | AdaptedBatch | Any, y: Tensor | None = None, mask: Any = None
    ) -> dict[str, Tensor]:
        """Loss terms for one batch (differentiable; call under autograd to train).

        Args:
            x: the inputs (a tensor), or an :class:`~lightning_xai.utilities.AdaptedBatch` (or a
                raw batch, split by the module's adapter).
            y: the labels; ``None`` takes them from the batch.
            mask: the annotation mask, or ``None`` for plain cross-entropy.

        Returns a dict with ``loss``, ``ce``, ``logits`` and, when ``mask`` is given,
        ``penalty``, ``input_gradients`` and ``mask`` (as applied to the gradients).
        """
        if isinstance(x, AdaptedBatch):
            batch = x
        elif isinstance(x, Tensor):  # the input itself
            batch = BatchAdapter(labels=None).split(x, self.model)
        else:
            batch = self.adapter.split(x, self.model)
        y = batch.labels if y is None else y
        if y is None:
            raise ValueError(
                f"The batch has no labels for the cross-entropy (adapter: {self.adapter!r}); "
                "point `labels=` of the BatchAdapter at them."
            )
        if mask is None:
            logits = batch.call(self.model)
            self._check_labels(y, logits)
            ce = F.cross_entropy(logits, y)
            return {"loss": ce, "ce": ce, "logits": logits}
        result = right_reasons_penalty(
            self.model,
            batch,
            mask,
            reduction="mean",
            method=self.gradient_method,
            # a differentiable penalty only where it is trained
            create_graph=torch.is_grad_enabled() and self.training and self.penalty_weight > 0,
            layer=self.layer,
        )
        self._check_labels(y, result.logits)
        ce = F.nll_loss(result.log_probs, y)
        return {
            "loss": ce + self.penalty_weight * result.penalty,
            "ce": ce,
            "penalty": result.penalty,
            "logits": result.logits,
            "input_gradients": result.input_gradients,
            "mask": result.mask,
        }

    def _check_labels(self, labels: Tensor, logits: Tensor) -> None:
        # once: the check reads the labels' range, a device sync on accelerators
        if not getattr(self, "_labels_checked", False):
            check_labels(labels, logits, source=f"the batch's labels, read by {self.adapter!r}")
            self._labels_checked = True

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        adapted = self.adapter.split(batch, self.model)
        mask = self.mask_of(batch, adapted)
        if stage == "train" or mask is None:
            out = self.compute_loss(adapted, mask=mask)
        else:
            # Lightning evaluates under no_grad/inference_mode; input gradients need autograd.
            parts = (adapted.inputs, adapted.extras, adapted.labels, mask)
            with grad_enabled(*parts) as (inputs, extras, labels, mask):
                adapted = dataclasses.replace(adapted, inputs=inputs, extras=extras, labels=labels)
                out = {k: _detach(v) for k, v in self.compute_loss(adapted, mask=mask).items()}
        self._log_terms(out, adapted.labels, mask, stage)  # type: ignore[arg-type]
        return out["loss"]

    @override
    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        try:
            super().backward(loss, *args, **kwargs)
        except RuntimeError as err:
            if "derivative for" not in str(err) or "not implemented" not in str(err):
                raise
            raise RuntimeError(
                f"{err}\nThe right-reasons penalty differentiates the input gradient once more "
                "(double backward), and an operation of the backbone has no second derivative. "
                "For HuggingFace models, load them with attn_implementation='eager' (fused "
                "scaled-dot-product attention has none on CPU); or set penalty_weight=0."
            ) from err

    @override
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self.adapter.split(batch, self.model).call(self.model).argmax(-1)

    def _log_terms(self, out: dict[str, Any], y: Tensor, mask: Any, stage: str) -> None:
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
            grads, applied = out["input_gradients"], out["mask"]
            if isinstance(grads, tuple):  # several inputs: one flat row per sample
                pairs = [(g, m) for g, m in zip(grads, applied) if m is not None]
                grads = torch.cat([g.flatten(1) for g, _ in pairs], dim=1)
                applied = torch.cat([m.expand_as(g).flatten(1) for g, m in pairs], dim=1)
            self.metrics[f"{stage}_right_reasons"].update(grads.detach(), applied)

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


def _detach(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    return value
