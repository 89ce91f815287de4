"""A classifier trained to be "right for the right reasons" with an input-gradient penalty."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.aggregation import MeanMetric
from typing_extensions import override

from lightning_xai.metrics.functional import relevance_mass_accuracy, sparseness
from lightning_xai.metrics.right_reasons import RightReasonsScore
from lightning_xai.modules._adapter import AdapterLike
from lightning_xai.modules.classifier import Classifier
from lightning_xai.penalties.right_reasons import (
    GradientMethod,
    log_prob_input_gradients,
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
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.report import Reporter
from lightning_xai.viz.attribution import annotate

__all__ = [
    "ExplanationRegularizedClassifier",
    "find_another_picture",
    "gradient_maps",
    "right_reasons_grid",
]

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
        probe_samples: fixed validation/test examples whose right-reasons picture is logged
            (0: none).
        probe_every_n_epochs: during ``fit``, draw the picture after every n-th validation
            epoch (and the last one); ``None``: only after the last.
        probe_seed: seed of the choice of the probe examples.

    Right-reasons pictures: at the end of validation epochs (``fit``, ``validate``) and of the
    test epoch, global rank zero draws ``probe_samples`` fixed examples of the val/test set
    (the same ones every time): each tile shows the input with its annotation mask outlined in
    green and the magnitude of the input gradient the penalty acts on, captioned with the
    example's index, label, prediction (probability) and the share of gradient mass inside
    the mask, under a title (split, stage, epoch, step) and a legend. It goes to TensorBoard
    as ``<stage>/right_reasons/input_gradients`` and to
    ``<log_dir>/xai/right_reasons/<stage>/input_gradients/epoch{E}_step{S}.png``, with two
    curves of the same probes: ``<stage>/right_reasons/quality/
    forbidden_relevance_mass_lower_is_better`` (the share of |gradient| inside the mask, over
    the probes with a mask) and ``.../quality/sparseness_higher_is_better`` (Gini index of the
    gradient magnitudes). It costs one input gradient of the probes and one picture (a few
    tens of milliseconds on a CPU). :func:`find_another_picture` draws the successive models
    of "find another explanation" side by side.

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
        probe_samples: int = 8,
        probe_every_n_epochs: int | None = 1,
        probe_seed: int = 0,
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
        if (
            isinstance(probe_samples, bool)
            or not isinstance(probe_samples, int)
            or probe_samples < 0
        ):
            raise ValueError(
                f"`probe_samples` must be an integer >= 0 (0 logs no right-reasons pictures), "
                f"got {probe_samples!r}."
            )
        if probe_every_n_epochs is not None and (
            isinstance(probe_every_n_epochs, bool)
            or not isinstance(probe_every_n_epochs, int)
            or probe_every_n_epochs < 1
        ):
            raise ValueError(
                f"`probe_every_n_epochs` must be a positive integer or None (only the last fit "
                f"epoch), got {probe_every_n_epochs!r}."
            )
        if isinstance(probe_seed, bool) or not isinstance(probe_seed, int):
            raise ValueError(f"`probe_seed` must be an integer, got {probe_seed!r}.")
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
        self.probe_samples = probe_samples
        self.probe_every_n_epochs = probe_every_n_epochs
        self.probe_seed = probe_seed
        self.probe_indices: list[int] = []
        self._restored: tuple[int, int] | None = None
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
        self.log_right_reasons("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_epoch_terms("test")
        self.log_right_reasons("test")

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # evaluating a checkpoint: pictures carry its epoch and global step
        self._restored = (int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0)))

    def _epoch_and_step(self) -> tuple[int, int]:
        from pytorch_lightning.trainer.states import TrainerFn

        trainer = self.trainer
        restored = getattr(self, "_restored", None)
        if restored is not None and trainer.state.fn != TrainerFn.FITTING:
            return restored
        return int(trainer.current_epoch), int(trainer.global_step)

    # ------------------------------------------------------------------ pictures
    def probe_batch(self, split: str) -> Any:
        """The fixed probe examples of the ``split`` (``"val"``/``"test"``) loader's dataset:
        ``probe_samples`` indices drawn with ``probe_seed``, collated by that loader, on the
        module's device; ``None`` when there is no such dataset."""
        trainer = self._trainer
        loaders = getattr(
            trainer, "val_dataloaders" if split == "val" else "test_dataloaders", None
        )
        if isinstance(loaders, Mapping):
            loaders = next(iter(loaders.values()), None)
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        dataset = getattr(loaders, "dataset", None)
        try:
            size = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            return None
        if size == 0:
            return None
        generator = torch.Generator().manual_seed(self.probe_seed)
        self.probe_indices = torch.randperm(size, generator=generator)[
            : self.probe_samples
        ].tolist()
        samples = [dataset[i] for i in self.probe_indices]  # type: ignore[index]
        collate = getattr(loaders, "collate_fn", None)
        if collate is None:
            from torch.utils.data import default_collate

            collate = default_collate
        batch = collate(samples)
        if isinstance(samples[0], tuple) and isinstance(batch, list):
            batch = tuple(batch)
        from pytorch_lightning.utilities import move_data_to_device

        return move_data_to_device(batch, self.device)

    def _picture_due(self) -> str | None:
        """The stage name when right-reasons pictures are due now, else ``None``."""
        from pytorch_lightning.trainer.states import TrainerFn

        trainer = self._trainer
        if trainer is None or not self.probe_samples or trainer.sanity_checking:
            return None
        stage = {
            TrainerFn.FITTING: "fit",
            TrainerFn.VALIDATING: "validate",
            TrainerFn.TESTING: "test",
        }.get(trainer.state.fn)  # type: ignore[arg-type]
        if stage is None or not trainer.is_global_zero:
            return None
        if stage == "fit":
            epoch, every = trainer.current_epoch + 1, self.probe_every_n_epochs
            last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
            if not last and (every is None or epoch % every):
                return None
        return stage

    def log_right_reasons(self, split: str) -> Any:
        """Log the input-gradient heatmaps of the fixed probes of ``split`` with their
        annotation masks outlined (TensorBoard image and PNG under
        ``<log_dir>/xai/right_reasons/<stage>/input_gradients/``), and their relevance mass
        inside the mask and sparseness as scalars. Rank zero only; returns the PNG path."""
        stage = self._picture_due()
        if stage is None:
            return None
        batch = self.probe_batch(split)
        if batch is None:
            return None
        trainer = self.trainer
        with eval_mode(self), grad_enabled():
            adapted = self.adapter.split(batch, self.model)
            mask = self.mask_of(batch, adapted)
            grads, logits = log_prob_input_gradients(
                self.model,
                adapted,
                method=self.gradient_method,
                create_graph=False,
                layer=self.layer,
            )
        several = isinstance(grads, tuple)
        if several:  # several explained inputs: draw the first
            grads = grads[0]
            mask = mask[0] if isinstance(mask, (tuple, list)) else None
        per_token = self.layer is not None
        maps = gradient_maps(grads, per_token)
        region = None
        if isinstance(mask, Tensor):
            if per_token and mask.dim() == 2:
                region = mask.bool()
            else:
                region = _mask_maps(mask, grads, per_token)
        probs = logits.detach().float().softmax(-1)
        conf, pred = probs.max(-1)
        labels = adapted.labels
        shares = None
        if region is not None and bool(region.any()):
            shares = relevance_mass_accuracy(maps, region.to(maps.device), empty_mask="zero")
        captions = []
        for i in range(len(maps)):
            parts = [f"example {self.probe_indices[i]}"]
            if labels is not None and labels.dim() == 1:
                parts.append(f"label {int(labels[i])}")
            parts.append(f"pred {int(pred[i])} ({float(conf[i]):.2f})")
            if shares is not None and bool(region[i].any()):  # type: ignore[index]
                parts.append(f"{100 * float(shares[i]):.0f}% of gradient in mask")
            captions.append(" · ".join(parts))
        epoch, step = self._epoch_and_step()
        inputs = adapted.inputs[0]
        title = (
            f"Right reasons: input gradients of {len(maps)} fixed {split} examples"
            + (" (first input)" if several else "")
            + f" · {stage} · epoch {epoch} · step {step}"
        )
        ids = None
        if not inputs.is_floating_point() and maps.dim() == 2 and inputs.shape == maps.shape:
            ids = [[str(int(t)) for t in row] for row in inputs.tolist()]
        what = (
            "the input with its annotation mask outlined (features the model must not rely "
            "on), and the magnitude of the input gradient"
            if inputs.is_floating_point() and inputs.dim() == 4
            else "the magnitude of the input gradient"
            + (" per token (token ids written in the cells)" if ids else "")
            + ", the annotation mask (features the model must not rely on) outlined"
        )
        picture = right_reasons_grid(
            inputs if inputs.is_floating_point() else None,
            [maps],
            [region],
            captions,
            title=title,
            panel_names=["|gradient| per token" if ids else "|gradient|"],
            note=f"Each tile: {what}. The gradient is that of the summed log-probabilities of "
            "all classes, the quantity the penalty acts on: a model right for the right reasons "
            "has little gradient inside the mask."
            + ("" if region is not None else " These examples carry no annotation mask."),
            tokens=ids,
        )
        reporter = Reporter(trainer, "right_reasons", epoch=epoch)
        tag = f"{stage}/right_reasons/input_gradients"
        path = reporter.log_image(tag, picture, step, reporter.file_for(tag, step, ".png"))
        scalars = {
            f"{stage}/right_reasons/quality/sparseness_higher_is_better": float(
                sparseness(maps).mean()
            )
        }
        if shares is not None:
            keep = region.flatten(1).any(1)  # type: ignore[union-attr]
            scalars[f"{stage}/right_reasons/quality/forbidden_relevance_mass_lower_is_better"] = (
                float(shares[keep].mean())
            )
        reporter.log_scalars(scalars, step)
        return path


def _detach(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    return value


# ---------------------------------------------------------------------------- pictures
#: Colour of the annotation mask's outline in every right-reasons picture.
MASK_COLOUR = (0, 160, 0)
_HEAT = "Reds"  # |gradient|: white is 0, dark red the panel's largest value


@lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _wrap(text: str, width: int, size: int) -> list[str]:
    """Greedy wrapping at ``" · "`` into lines at most ``width`` pixels; ``\\n`` breaks."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        lines: list[str] = []
        for piece in paragraph.split(" · "):
            candidate = f"{lines[-1]} · {piece}" if lines else piece
            if lines and _font(size).getlength(candidate) <= width:
                lines[-1] = candidate
            else:
                lines.append(piece)
        out += lines
    return out


def gradient_maps(gradients: Tensor, per_token: bool = False) -> Tensor:
    """Input-gradient magnitude per pixel, time step or feature, for display.

    ``(N, C, H, W)`` images give ``(N, H, W)``, ``(N, C, T)`` signals ``(N, T)`` (``|g|``
    summed over channels); with ``per_token=True`` gradients at an embedding ``(N, T, E)``
    give ``(N, T)`` (summed over the embedding); anything else is flattened to ``(N, D)``.

    Example:
        >>> gradient_maps(torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]]]])).tolist()
        [[[4.0, 2.0]]]
    """
    magnitude = gradients.detach().abs().float()
    if per_token:
        return magnitude.flatten(2).sum(2)
    if magnitude.ndim in (3, 4):
        return magnitude.sum(1)
    return magnitude.flatten(1)


def _mask_maps(mask: Tensor | None, gradients: Tensor, per_token: bool) -> Tensor | None:
    """The mask reduced like :func:`gradient_maps` (a feature is inside when any channel is)."""
    if mask is None:
        return None
    mask = mask.detach().bool()
    if per_token:
        return mask.flatten(2).any(2) if mask.ndim > 2 else mask
    mask = mask.expand_as(gradients)
    if mask.ndim in (3, 4):
        return mask.any(1)
    return mask.flatten(1)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The inner border (``width`` pixels) of a boolean ``(h, w)`` mask."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (
            padded[1:-1, 1:-1]
            & padded[:-2, 1:-1]
            & padded[2:, 1:-1]
            & padded[1:-1, :-2]
            & padded[1:-1, 2:]
        )
    return mask & ~inner


def right_reasons_grid(
    inputs: Tensor | None,
    maps: Sequence[Tensor],
    masks: Sequence[Tensor | None] | None = None,
    captions: Sequence[str] | None = None,
    *,
    title: str,
    panel_names: Sequence[str] | None = None,
    note: str | None = None,
    max_width: int = 1000,
    tokens: Sequence[Sequence[str]] | None = None,
) -> np.ndarray:
    """A titled grid with one tile per example: the input and one heatmap per model.

    Each heatmap panel shows ``maps[j]`` (a magnitude such as :func:`gradient_maps`, white = 0,
    dark red = the panel's largest value) over a muted copy of the input, with ``masks[j]``
    outlined in green; with one map, the input panel outlines its mask too. A legend under the grid says
    what the colours and the outline mean.

    Args:
        inputs: ``(N, C, H, W)`` images shown in the first panel (and under the heatmaps), or
            ``None`` (token or tabular inputs: heatmaps only).
        maps: ``k`` non-negative maps ``(N, H, W)`` (or ``(N, D)``, drawn as a strip), one
            per model.
        masks: one boolean mask per map, shaped like it, or ``None`` entries.
        captions: one caption per example, pieces separated by ``" · "`` (wrapped there)
            or ``"\\n"`` (always a new line).
        title: the line above the grid.
        panel_names: the heading of each heatmap panel (default ``"model 1"``, ...).
        note: a sentence added to the legend.
        max_width: the widest the picture may be, in pixels.
        tokens: for strips ``(N, D)``, the text written in each cell (e.g. token ids).

    Returns:
        An ``(H', W', 3)`` ``uint8`` image.

    Example:
        >>> x, g = torch.rand(3, 1, 6, 6), torch.rand(3, 6, 6)
        >>> mask = torch.zeros(3, 6, 6, dtype=torch.bool)
        >>> mask[:, :2, :2] = True
        >>> grid = right_reasons_grid(x, [g], [mask], ["label 1"] * 3, title="demo")
        >>> grid.dtype.name, grid.shape[1] <= 1000
        ('uint8', True)
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    if not maps:
        raise ValueError("`maps` is empty: give at least one heatmap per example.")
    heat = [m.detach().float().cpu().numpy() for m in maps]
    heat = [h[:, None, :] if h.ndim == 2 else h for h in heat]  # strips: one row per example
    n, height, width = heat[0].shape
    if any(h.shape != heat[0].shape for h in heat):
        raise ValueError(f"`maps` must share one shape, got {[tuple(m.shape) for m in maps]}.")
    if not all(np.isfinite(h).all() for h in heat):
        raise ValueError("`maps` holds NaN or inf; there is nothing sensible to draw.")
    outlines: list[np.ndarray | None] = []
    for m in masks or [None] * len(heat):
        if m is None:
            outlines.append(None)
            continue
        mask = m.detach().bool().cpu().numpy()
        outlines.append(mask[:, None, :] if mask.ndim == 2 else mask)
    if len(outlines) != len(heat):
        raise ValueError(f"`masks` has {len(outlines)} entries for {len(heat)} maps.")
    if captions is not None and len(captions) != n:
        raise ValueError(f"`captions` has {len(captions)} entries for {n} examples.")
    images = None
    if inputs is not None and inputs.ndim == 4 and tuple(inputs.shape[2:]) == (height, width):
        x = inputs.detach().float().cpu().numpy()
        x = np.moveaxis(x, 1, -1) if x.shape[1] == 3 else np.repeat(x.mean(1)[..., None], 3, -1)
        lo = x.reshape(n, -1).min(1).reshape(-1, 1, 1, 1)
        span = x.reshape(n, -1).max(1).reshape(-1, 1, 1, 1) - lo
        images = np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)
    zoom_y = max(1, -(-64 // max(height, width))) if height > 1 else 16
    zoom_x = zoom_y if height > 1 else max(2, min(16, 480 // max(width, 1)))
    if tokens is not None and height == 1:
        longest = max((_font(9).getlength(t) for row in tokens for t in row), default=0)
        zoom_x = max(zoom_x, int(longest) + 4)
    border = max(1, zoom_y // 3) if height > 1 else 1
    cmap = colormaps[_HEAT]
    first_mask = outlines[0] if len(outlines) == 1 else None  # one model: its mask

    def panel(n_i: int, j: int | None) -> np.ndarray:
        base = np.ones((height, width, 3)) if images is None else images[n_i]
        if j is None:
            rgb, mask = base, first_mask
        else:
            values = heat[j][n_i]
            peak = values.max()
            normed = values / peak if peak > 0 else np.zeros_like(values)
            colours = cmap(normed)[..., :3]
            weight = (
                0.9 * normed[..., None] if images is not None else np.ones_like(normed)[..., None]
            )
            rgb = (1 - weight) * (0.55 + 0.35 * base) + weight * colours
            mask = outlines[j]
        big = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
        big = big.repeat(zoom_y, axis=0).repeat(zoom_x, axis=1)
        if mask is not None:
            edge = _outline(mask[n_i].repeat(zoom_y, axis=0).repeat(zoom_x, axis=1), border)
            big[edge] = MASK_COLOUR
        return big

    show_input = images is not None
    names = list(panel_names or [f"model {j + 1}" for j in range(len(heat))])
    headings = (["input"] if show_input else []) + names
    gap = 4
    panel_w, panel_h = width * zoom_x, height * zoom_y
    count = len(heat) + int(show_input)
    tile_w = max(count * panel_w + (count - 1) * gap, 120)
    size, line_h, head_h = 10, 13, 14
    wrapped = [_wrap(c, tile_w, size) for c in (captions or [""] * n)]
    caption_h = max(len(w) for w in wrapped) * line_h + 4
    pad = 6
    cols = max(1, min(n, (max_width - pad) // (tile_w + pad)))
    rows = -(-n // cols)
    cols = -(-n // rows)
    tile_h = head_h + panel_h + caption_h
    body = Image.new("RGB", (cols * (tile_w + pad) + pad, rows * (tile_h + pad) + pad), "white")
    draw = ImageDraw.Draw(body)
    font = _font(size)
    for i in range(n):
        r, c = divmod(i, cols)
        left, top = pad + c * (tile_w + pad), pad + r * (tile_h + pad)
        panels = ([None] if show_input else []) + list(range(len(heat)))
        for p, j in enumerate(panels):
            x0 = left + p * (panel_w + gap)
            heading = headings[p]
            if font.getlength(heading) > panel_w + gap:
                heading = heading.split(" ")[-1] if j is not None else heading
            draw.text((x0, top), heading, fill="black", font=font)
            body.paste(Image.fromarray(panel(i, j)), (x0, top + head_h))
            if tokens is not None and height == 1 and j is not None:
                peak = heat[j][i].max()
                for t, text in enumerate(tokens[i][:width]):
                    dark = peak > 0 and heat[j][i, 0, t] / peak > 0.6
                    draw.text(
                        (x0 + t * zoom_x + 2, top + head_h + 3),
                        text,
                        fill="white" if dark else "black",
                        font=_font(9),
                    )
        if wrapped[i]:
            draw.multiline_text(
                (left, top + head_h + panel_h + 2),
                "\n".join(wrapped[i]),
                fill="black",
                font=font,
                spacing=3,
            )
    # legend: the colour ramp and the outline
    legend_w = max(body.width, 420)
    legend = Image.new("RGB", (legend_w, 20), "white")
    ldraw = ImageDraw.Draw(legend)
    ldraw.text((4, 4), "0", fill="black", font=font)
    ramp = (cmap(np.linspace(0, 1, 120))[:, :3] * 255).astype(np.uint8)
    legend.paste(Image.fromarray(np.repeat(ramp[None], 10, axis=0)), (14, 5))
    ldraw.rectangle((13, 4, 134, 15), outline=(120, 120, 120))
    ldraw.text((140, 4), "max (each panel)", fill="black", font=font)
    box = 140 + int(font.getlength("max (each panel)")) + 16
    ldraw.rectangle((box, 4, box + 11, 15), outline=MASK_COLOUR, width=2)
    ldraw.text((box + 16, 4), "annotation mask", fill="black", font=font)
    canvas = Image.new("RGB", (legend_w, body.height + 20), "white")
    canvas.paste(body, (0, 0))
    canvas.paste(legend, (0, body.height))
    return annotate(np.asarray(canvas), title, legend=False, note=note)


def find_another_picture(
    models: Sequence[nn.Module],
    batch: Any,
    masks: Sequence[Tensor | None] | None = None,
    *,
    title: str = "Find another explanation: the input gradients of models 1..k",
    adapter: BatchAdapter | None = None,
    layer: str | nn.Module | None = None,
) -> np.ndarray:
    """The successive models of "find another explanation" side by side, on one probe batch.

    For each example, the input and each model's input-gradient magnitude (the quantity the
    right-reasons penalty acts on), with the mask model ``j`` was trained with outlined;
    captions give the label and each model's prediction and share of gradient mass inside its
    mask.

    Args:
        models: the trained classifiers, in training order (model 1 first).
        batch: the probe batch, read by ``adapter``.
        masks: the annotation mask each model was trained with (``None`` for none), e.g. the
            results of :func:`~lightning_xai.penalties.find_another_explanation`.
        title: the picture's title.
        adapter: how to read ``batch`` (default ``BatchAdapter()``).
        layer: the embedding layer for token ids.

    Returns:
        An ``(H, W, 3)`` ``uint8`` image.

    Example:
        >>> from lightning_xai.penalties import find_another_explanation
        >>> first, second = nn.Linear(16, 3), nn.Linear(16, 3)
        >>> x = torch.rand(4, 1, 4, 4)
        >>> flat = lambda m: nn.Sequential(nn.Flatten(), m)
        >>> mask = find_another_explanation(flat(first), x)
        >>> picture = find_another_picture([flat(first), flat(second)], x, [None, mask])
        >>> picture.dtype.name
        'uint8'
    """
    if not models:
        raise ValueError("`models` is empty; give the trained models in training order.")
    masks = list(masks) if masks is not None else [None] * len(models)
    if len(masks) != len(models):
        raise ValueError(f"`masks` has {len(masks)} entries for {len(models)} models.")
    adapter = adapter or BatchAdapter()
    per_token = layer is not None
    maps, outlines, lines = [], [], []
    labels = None
    inputs: Tensor | None = None
    for j, (model, mask) in enumerate(zip(models, masks)):
        adapted = adapter.split(batch, model) if not isinstance(batch, Tensor) else None
        with eval_mode(model), grad_enabled():
            grads, logits = log_prob_input_gradients(
                model, adapted if adapted is not None else batch, create_graph=False, layer=layer
            )
        if isinstance(grads, tuple):
            raise ValueError("find_another_picture draws one explained input; got several.")
        if adapted is not None:
            labels = adapted.labels
            inputs = adapted.inputs[0]
        else:
            inputs = batch
        maps.append(gradient_maps(grads, per_token))
        region = _mask_maps(mask, grads, per_token) if mask is not None else None
        outlines.append(region)
        probs = logits.detach().float().softmax(-1)
        conf, pred = probs.max(-1)
        shares = (
            relevance_mass_accuracy(maps[-1], region.to(maps[-1].device), empty_mask="zero")
            if region is not None and bool(region.any())
            else None
        )
        lines.append(
            [
                f"model {j + 1}: pred {int(pred[i])} ({float(conf[i]):.2f})"
                + ("" if shares is None else f", {100 * float(shares[i]):.0f}% in its mask")
                for i in range(len(pred))
            ]
        )
    n = len(maps[0])
    captions = []
    for i in range(n):
        head = f"example {i}" + ("" if labels is None else f" · label {int(labels[i])}")
        captions.append("\n".join([head, *(line[i] for line in lines)]))
    shown = inputs if inputs is not None and inputs.is_floating_point() else None
    return right_reasons_grid(
        shown,
        maps,
        outlines,
        captions,
        title=title,
        note="Each panel: |input gradient of the summed log-probabilities of all classes| of one model, the quantity the "
        "right-reasons penalty acts on; green outline: the mask that model was trained with "
        "(features it must not rely on). Model j+1 is trained with the features model j relied "
        "on forbidden as well.",
    )
