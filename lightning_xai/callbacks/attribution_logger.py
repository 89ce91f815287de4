"""Log attributions of fixed probe samples during ``fit``, ``validate`` and ``test``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.data import DataLoader
from typing_extensions import override

from lightning_xai.attribution import AttributionConfig, AttributionResult, Attributor
from lightning_xai.attribution.attributor import AttributionWarning
from lightning_xai.attribution.baselines import BaselineLike
from lightning_xai.attribution.config import NoiseTunnelType, TargetLike
from lightning_xai.attribution.methods import MethodLike
from lightning_xai.attribution.result import input_kind
from lightning_xai.callbacks.base import STAGES, Stage, TrainDataLike, XAICallback
from lightning_xai.metrics.functional.attribution import attribution_rank_correlation
from lightning_xai.utilities.batches import BatchAdapter, resolve_callable
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.validation import check_positive_int
from lightning_xai.viz.attribution import (
    annotate,
    attribution_bar_chart,
    attribution_grid,
    signal_chart,
)
from lightning_xai.viz.tokens import token_image, token_markdown, token_strings

__all__ = ["AttributionLogger"]

VocabularyLike = Sequence[str] | Callable[..., Any] | str | None


class AttributionLogger(XAICallback):
    """Attribute the model's outputs to the inputs of fixed probe samples and log the result.

    At the end of validation epochs (``fit``, ``validate``) and of the test epoch (``test``) it
    runs an attribution method (any captum method, see
    :class:`~lightning_xai.attribution.Attributor`) on ``num_samples`` fixed examples, on global
    rank zero only, and logs under ``<stage>/attribution_logger/``:

    * ``attributions`` (``attributions/<input>`` for several explained inputs), one picture per
      explained input with a caption (method, stage, epoch, step) and a colour legend: for
      images (1 or 3 channels, any size) a grid of each input next to its signed heatmap
      overlay (layer attributions upsampled); for 1-D signals ``(N, C, T)`` lines coloured by
      attribution; for tabular inputs a signed bar chart per feature (``feature_names``); for
      integer token ids the tokens on backgrounds coloured by attribution, as a picture and
      as HTML-span markdown under ``tokens`` (``vocabulary`` turns ids into strings);
    * ``completeness_gap``: for methods with a completeness property, the relative gap between
      the summed attributions and ``f(x) - f(baseline)`` (a warning names the fix when it is
      large);
    * ``drift``: the Spearman rank correlation with the previous run's attributions of the same
      examples (1 = same ranking), from the second run on;
    * ``infidelity`` and ``sensitivity`` (captum.metrics) when enabled;
    * the raw attributions as ``xai/attribution_logger/<stage>/epoch<E>_step<S>.pt`` (next to
      the picture's ``.png``).

    Before the first training step (and at the start of ``validate``/``test``) :meth:`check`
    runs the attribution once on two real probe samples, so a bad ``layer`` path, DeepLift on a
    reused activation, bad ``method_kwargs``, token ids without ``layer``, inputs of the wrong
    dtype or labels out of range under ``target="label"`` fail at once.

    Args:
        method: a method name (``"integrated_gradients"``, ``"saliency"``, ``"deeplift"``,
            ``"occlusion"``, ``"layer_grad_cam"``, ...), a captum class or a configured instance.
        num_samples: number of probe samples.
        every_n_epochs: during ``fit``, run after every n-th epoch (``validate`` and ``test``
            always run). The defaults (integrated gradients with 8 steps on 16 samples every
            5 epochs) cost about 2-4% of the quickstart's fit time; each run costs roughly
            ``num_samples * n_steps`` forward and backward passes plus one image.
        stages: the trainer entry points in which to run.
        target: ``"pred"``, ``"label"``, or a class index. Ignored in label-free mode when
            left at ``"pred"``.
        method_kwargs: arguments for the method's ``attribute``. Methods taking ``n_steps``
            (integrated gradients, conductance, ...) default to ``n_steps=8`` here, which keeps
            the callback cheap while the completeness gap stays below 1% on the quickstart.
        layer: module path of the layer for layer methods (``"features.2"``), relative to the
            LightningModule (a leading ``model.`` may be left out); for integer token ids, the
            embedding layer (``"bert.bert.embeddings.word_embeddings"``).
        baseline: ``"zeros"``, ``"mean"`` (mean of up to ``mean_samples`` training inputs),
            ``"blur"``, a number or a tensor.
        label_free: explain a representation (e.g. an encoder's output) without labels.
        forward_fn: what to explain instead of the LightningModule's ``forward``: the name of
            a method (``"encode"``) or a submodule path (``"encoder"``). In label-free mode it
            defaults to ``"encode"`` when the module has one.
        noise_tunnel: ``"smoothgrad"``, ``"smoothgrad_sq"`` or ``"vargrad"`` to wrap the
            method in captum's ``NoiseTunnel``.
        nt_samples: noisy copies per example for ``noise_tunnel``.
        nt_stdevs: noise standard deviation for ``noise_tunnel``.
        internal_batch_size: passed to methods that accept it.
        init_kwargs: constructor arguments of the captum method (``multiply_by_inputs``, ...).
        blur_sigma: Gaussian sigma in pixels for ``baseline="blur"``.
        check_hooks: look for functional or reused activations before hook-based methods.
        completeness_threshold: warn when the relative completeness gap exceeds it.
        infidelity: also log captum's infidelity (input attribution methods only).
        sensitivity: also log captum's max-sensitivity (costs several extra attributions).
        adapter: how probe batches are read and the model is called (default
            ``BatchAdapter()``: tensors, ``(x, y, ...)`` tuples, HuggingFace dicts).
        vocabulary: turns token ids into strings: a sequence (``vocabulary[id]``), a callable
            on a list of ids (a tokenizer's ``convert_ids_to_tokens``), or its dotted import
            path.
        feature_names: names of the features for the bar chart of tabular inputs.
        top_k: number of features shown in the bar chart.
        mean_samples: training inputs read for ``baseline="mean"``.
        train_data: the training set (Dataset or DataLoader) for ``baseline="mean"``, when
            neither the datamodule nor a previous ``fit`` provides it.
        save_attributions: write the raw ``.pt`` file each run.
        name: the tag and folder component (default ``"attribution_logger"``); give each of
            several AttributionLoggers on one trainer its own name.
        seed: seed of the probe-sample choice.

    Example:
        >>> from lightning_xai.callbacks import AttributionLogger
        >>> cb = AttributionLogger("integrated_gradients", num_samples=8, stages=("fit",))
        >>> cb.config.method_kwargs
        {'n_steps': 8}
        >>> try:
        ...     AttributionLogger("no_such_method")
        ... except MisconfigurationException as err:
        ...     print(str(err)[:60])
        `method='no_such_method'` is not a known attribution method.
    """

    DEFAULT_N_STEPS = 8

    def __init__(
        self,
        method: MethodLike = "integrated_gradients",
        num_samples: int = 16,
        every_n_epochs: int = 5,
        stages: Sequence[Stage] = STAGES,
        target: TargetLike = "pred",
        method_kwargs: Mapping[str, Any] | None = None,
        *,
        layer: str | None = None,
        baseline: BaselineLike = "zeros",
        label_free: bool = False,
        forward_fn: str | None = None,
        noise_tunnel: NoiseTunnelType | None = None,
        nt_samples: int = 8,
        nt_stdevs: float = 0.1,
        internal_batch_size: int | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
        blur_sigma: float | None = None,
        check_hooks: bool = True,
        completeness_threshold: float | None = 0.1,
        infidelity: bool = False,
        sensitivity: bool = False,
        adapter: BatchAdapter | None = None,
        vocabulary: VocabularyLike = None,
        feature_names: Sequence[str] | None = None,
        top_k: int = 20,
        mean_samples: int = 2048,
        save_attributions: bool = True,
        train_data: TrainDataLike = None,
        name: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            stages=stages,
            every_n_epochs=every_n_epochs,
            num_samples=num_samples,
            seed=seed,
            name=name,
        )
        explained_target = None if isinstance(target, str) and target == "pred" else target
        try:
            config = AttributionConfig(
                method=method,
                layer=layer,
                baseline=baseline,
                target=explained_target,
                label_free=label_free,
                noise_tunnel=noise_tunnel,
                nt_samples=nt_samples,
                nt_stdevs=nt_stdevs,
                internal_batch_size=internal_batch_size,
                method_kwargs=method_kwargs,  # type: ignore[arg-type]
                init_kwargs=init_kwargs,  # type: ignore[arg-type]
                blur_sigma=blur_sigma,
                completeness_threshold=completeness_threshold,
                check_hooks=check_hooks,
            )
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(str(err)) from err
        spec = config.spec
        if "n_steps" in spec.accepts and "n_steps" not in config.method_kwargs:
            config.method_kwargs["n_steps"] = self.DEFAULT_N_STEPS
        if (infidelity or sensitivity) and spec.needs_layer:
            raise MisconfigurationException(
                f"`infidelity`/`sensitivity` need input attributions, but `method={spec.name!r}` "
                "is a layer method. Turn them off or choose an input method."
            )
        if forward_fn is not None and (not isinstance(forward_fn, str) or not forward_fn):
            raise MisconfigurationException(
                f"`forward_fn` must be the name of a method or submodule of the LightningModule "
                f"(e.g. 'encode' or 'encoder'), got {forward_fn!r}."
            )
        for arg, value in (("top_k", top_k), ("mean_samples", mean_samples)):
            check_positive_int(arg, value, error=MisconfigurationException)
        if adapter is None:
            adapter = BatchAdapter()
        if not isinstance(adapter, BatchAdapter):
            raise MisconfigurationException(
                f"`adapter` must be a BatchAdapter, got {type(adapter).__name__}; e.g. "
                "adapter=BatchAdapter(inputs='input_ids', labels='labels')."
            )
        if feature_names is not None and (
            isinstance(feature_names, str) or not all(isinstance(f, str) for f in feature_names)
        ):
            raise MisconfigurationException(
                f"`feature_names` must be a list of strings, got {feature_names!r}."
            )
        self.config = config
        self.method = method
        self.spec = spec
        self.target = target
        self.label_free = label_free
        self.forward_fn = forward_fn
        self.infidelity = infidelity
        self.sensitivity = sensitivity
        self.adapter = adapter
        self.vocabulary = _vocabulary(vocabulary)
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.top_k = top_k
        self.mean_samples = mean_samples
        self.save_attributions = save_attributions
        self.train_data = train_data
        self.attributor: Attributor | None = None
        self._module_id: int | None = None
        self.previous: dict[str, Tensor] = {}
        self._state_key = self._generate_state_key(
            name=self.name, method=spec.name, layer=layer, stages=self.stages, seed=self.seed
        )

    @property
    @override
    def state_key(self) -> str:
        return self._state_key  # Lightning reads it around every hook: computed once

    # ------------------------------------------------------------------ checks
    @override
    def check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Build the attributor and run it on two real probe samples, so that every
        configuration error shows before the first training step."""
        attributor = self._build(pl_module)
        batch = self.check_batch(trainer, pl_module, stage, limit=2)
        devices = [pl_module.device.index or 0] if pl_module.device.type == "cuda" else []
        try:
            with (
                torch.random.fork_rng(devices=devices),
                eval_mode(pl_module),
                grad_enabled(),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", AttributionWarning)
                if attributor.baseline == "mean" and attributor.mean_baseline is None:
                    self._fit_mean(trainer, attributor)
                result = attributor.attribute(batch)
        except MisconfigurationException:
            raise
        except (ValueError, TypeError, RuntimeError, IndexError, KeyError) as err:
            raise MisconfigurationException(
                f"{type(self).__name__}(name={self.name!r}) cannot explain "
                f"{type(pl_module).__name__} on its probe samples: {err}"
            ) from err
        finally:
            attributor._warned.clear()  # warnings silenced here are shown at the first run
            attributor._hazards = None
        tabular = [x for _, x in result.parts() if input_kind(x) == "tabular"]
        if self.feature_names is not None and tabular:
            widths = [int(np.prod(x.shape[1:])) for x in tabular]
            if len(self.feature_names) not in widths:
                raise MisconfigurationException(
                    f"`feature_names` has {len(self.feature_names)} names but the tabular "
                    f"inputs have {widths} features; give one name per feature."
                )
        if (self.infidelity or self.sensitivity) and (
            result.num_inputs > 1 or not result.parts()[0][1].is_floating_point()
        ):
            raise MisconfigurationException(
                "`infidelity`/`sensitivity` perturb one floating-point input, but the adapter "
                f"explains {result.num_inputs} input(s) of dtype "
                f"{[str(x.dtype) for _, x in result.parts()]}; turn them off."
            )

    # ------------------------------------------------------------------ setup
    def _build(self, pl_module: pl.LightningModule) -> Attributor:
        if self.attributor is not None and self._module_id == id(pl_module):
            return self.attributor
        try:
            self.attributor = Attributor(
                pl_module,
                self.config,
                adapter=self.adapter,
                forward_fn=self._forward_fn(pl_module),
            )
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(str(err)) from err
        self._module_id = id(pl_module)
        return self.attributor

    def _forward_fn(self, pl_module: pl.LightningModule) -> Callable[..., Any] | None:
        name = self.forward_fn
        if name is None:
            return pl_module.encode if self.label_free and hasattr(pl_module, "encode") else None
        if "." not in name and callable(getattr(type(pl_module), name, None)):
            return getattr(pl_module, name)
        try:
            module = pl_module.get_submodule(name)
        except AttributeError:
            module = None
        if not isinstance(module, nn.Module):
            raise MisconfigurationException(
                f"`forward_fn={name!r}` is neither a method nor a submodule of "
                f"{type(pl_module).__name__}; use e.g. forward_fn='encode' or 'encoder'."
            )
        return module

    # ------------------------------------------------------------------ running
    @override
    def explain(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, batch: Any
    ) -> None:
        attributor = self._build(pl_module)
        if attributor.baseline == "mean" and attributor.mean_baseline is None:
            self._fit_mean(trainer, attributor)
        result = attributor.attribute(batch)
        split = "test" if stage == "test" else "val"
        reporter = self.reporter(trainer)
        step = self.step(trainer)
        stem = f"{stage}/epoch{trainer.current_epoch:04d}_step{step:07d}"
        caption = f"{result.method} | {stage} | epoch {trainer.current_epoch} | step {step}"
        names = self._input_names(result.num_inputs)
        for i, (attributions, inputs) in enumerate(result.parts()):
            key = "attributions" if result.num_inputs == 1 else f"attributions/{names[i]}"
            suffix = "" if result.num_inputs == 1 else f"_{names[i]}"
            if input_kind(inputs) == "tokens":
                tokens = token_strings(inputs, self.vocabulary)
                labels = _target_labels(result)
                markdown = token_markdown(tokens, attributions, result.mask, labels, caption)
                text_key = "tokens" if result.num_inputs == 1 else f"tokens/{names[i]}"
                reporter.log_text(self.tag(stage, text_key), markdown, step, f"{stem}{suffix}.md")
                picture = token_image(tokens, attributions, result.mask, labels)
            else:
                picture = self._picture(attributions, inputs, result.method)
            reporter.log_image(
                self.tag(stage, key), annotate(picture, caption), step, f"{stem}{suffix}.png"
            )
        reporter.log_scalars(self._scalars(attributor, result, split, stage), step)
        self.previous[split] = _drift_view(result).detach().cpu()
        if self.save_attributions:
            payload = {
                "attributions": _cpu(result.attributions),
                "inputs": _cpu(result.inputs),
                "targets": None if result.targets is None else result.targets.cpu(),
                "output_delta": None if result.output_delta is None else result.output_delta.cpu(),
                "mask": None if result.mask is None else result.mask.cpu(),
                "probe_indices": list(self.probe_indices.get(split, [])),
                "method": result.method,
                "layer": result.layer,
                "epoch": int(trainer.current_epoch),
                "step": step,
            }
            reporter.save(f"{stem}.pt", payload)

    def _input_names(self, count: int) -> list[str]:
        keys = self.adapter.inputs
        if isinstance(keys, tuple) and len(keys) == count:
            return [str(k) for k in keys]
        return [f"input{i}" for i in range(count)]

    def _picture(self, attributions: Tensor, inputs: Tensor, method: str) -> np.ndarray:
        maps = cast(Tensor, AttributionResult(attributions, inputs, None, method).heatmaps())
        kind = input_kind(inputs)
        if kind == "image" and maps.dim() == 3:
            return attribution_grid(inputs, maps)
        if kind == "signal" and maps.dim() == 2 and maps.shape[1] == inputs.shape[-1]:
            return signal_chart(inputs, maps)
        names = self.feature_names
        if names is not None and len(names) != maps[0].numel():
            names = None
        return attribution_bar_chart(maps, feature_names=names, top_k=self.top_k, title=method)

    def _scalars(
        self, attributor: Attributor, result: AttributionResult, split: str, stage: str
    ) -> dict[str, float]:
        scalars: dict[str, float] = {}
        gap = result.relative_completeness_gap
        if gap is not None:
            scalars[self.tag(stage, "completeness_gap")] = gap
        previous = self.previous.get(split)
        current = _drift_view(result).cpu()
        if previous is not None and previous.shape == current.shape:
            drift = float(attribution_rank_correlation(previous, current))
            if not math.isnan(drift):
                scalars[self.tag(stage, "drift")] = drift
        if self.infidelity:
            scalars[self.tag(stage, "infidelity")] = float(attributor.infidelity(result).mean())
        if self.sensitivity:
            scalars[self.tag(stage, "sensitivity")] = float(attributor.sensitivity(result).mean())
        return scalars

    def _fit_mean(self, trainer: pl.Trainer, attributor: Attributor) -> None:
        try:
            dataset = self.train_dataset(trainer)
        except MisconfigurationException as err:
            raise MisconfigurationException(
                f"`baseline='mean'` needs the training data: {err} Or pass the mean input as a "
                "tensor: baseline=<tensor>."
            ) from err
        x = getattr(dataset, "x", None)
        data = x if isinstance(x, Tensor) else DataLoader(dataset, batch_size=256, shuffle=False)  # type: ignore[arg-type]
        attributor.fit_baseline(data, max_samples=self.mean_samples)

    # ------------------------------------------------------------------ resume
    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["previous"] = {k: v.clone() for k, v in self.previous.items()}
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.previous = dict(state_dict.get("previous", {}))


def _vocabulary(value: VocabularyLike) -> Sequence[str] | Callable[..., Any] | None:
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        resolved = resolve_callable(value)
        if callable(resolved):
            return resolved
        raise MisconfigurationException(
            f"`vocabulary={value!r}` is a string that does not import as a callable; give a "
            "list of tokens, a callable on a list of ids (e.g. "
            "tokenizer.convert_ids_to_tokens) or its dotted import path 'package.module.name'."
        )
    if isinstance(value, Sequence):
        return list(value)
    raise MisconfigurationException(
        f"`vocabulary` must be a sequence of token strings, a callable or a dotted import "
        f"path, got {type(value).__name__}."
    )


def _target_labels(result: AttributionResult) -> list[str] | None:
    if result.targets is None:
        return None
    return [f"target {int(t)}" for t in result.targets.cpu()]


def _drift_view(result: AttributionResult) -> Tensor:
    """One tensor per result for the drift correlation (several inputs: concatenated)."""
    return result.attributions if isinstance(result.attributions, Tensor) else result.flat()


def _cpu(value: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    if isinstance(value, tuple):
        return tuple(v.detach().cpu() for v in value)
    return value.detach().cpu()
