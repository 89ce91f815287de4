"""Log attributions of fixed probe samples during ``fit``, ``validate`` and ``test``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.data import DataLoader
from typing_extensions import override

from lightning_xai.attribution import AttributionConfig, AttributionResult, Attributor
from lightning_xai.attribution.attributor import (
    AttributionWarning,
    NonFiniteAttributionWarning,
    NonFiniteInputError,
)
from lightning_xai.attribution.baselines import BaselineLike
from lightning_xai.attribution.config import NoiseTunnelType, TargetLike
from lightning_xai.attribution.methods import MethodLike
from lightning_xai.attribution.result import input_kind
from lightning_xai.callbacks.base import STAGES, Stage, TrainDataLike, XAICallback
from lightning_xai.metrics.functional.attribution import attribution_rank_correlation
from lightning_xai.utilities.batches import BatchAdapter, resolve_callable
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.report import NonFiniteWarning, Reporter
from lightning_xai.utilities.validation import check_positive_int
from lightning_xai.viz.attribution import (
    SCALES,
    Scale,
    annotate,
    attribution_bar_chart,
    attribution_grid,
    colour_limits,
    signal_chart,
)
from lightning_xai.viz.tokens import token_image, token_markdown, token_strings

__all__ = ["RANK_AGREEMENT", "AttributionLogger"]

#: The scalar comparing each run's attributions with the previous run's (higher = more stable).
RANK_AGREEMENT = "rank_agreement_with_previous"

VocabularyLike = Sequence[str] | Callable[..., Any] | str | None


class AttributionLogger(XAICallback):
    """Attribute the model's outputs to the inputs of fixed probe samples and log the result.

    At the end of validation epochs (``fit``, ``validate``) and of the test epoch (``test``) it
    runs an attribution method (any captum method, see
    :class:`~lightning_xai.attribution.Attributor`) on ``num_samples`` fixed examples, on global
    rank zero only, and logs under ``<stage>/attribution_logger/``:

    * ``attributions`` (``attributions/<input>`` for several explained inputs), one picture per
      explained input, titled with the method, the explained output, stage, epoch and step;
      each example is captioned in words (``example 17 · label 3 · pred 3 (0.98) · target
      3``) and a legend states the colour scale (blue lowers the explained score, red raises
      it), its range and whether it is per tile or shared (``scale``). For images (1 or 3
      channels, in colour, any size) a grid of each input next to its signed heatmap overlay
      (layer attributions such as Grad-CAM upsampled to the input), wrapped to fit a
      TensorBoard card; for 1-D signals ``(N, C, T)`` lines coloured by attribution; for
      tabular inputs signed bars per named feature (``feature_names``); for integer token ids
      the tokens on backgrounds coloured by attribution, as a picture and as HTML-span
      markdown under ``tokens`` (``vocabulary`` turns ids into strings);
    * ``completeness_gap``: for methods with a completeness property, the relative gap between
      the summed attributions and ``f(x) - f(baseline)`` (lower is better; a warning names
      the fix when it is large);
    * ``rank_agreement_with_previous``: the mean Spearman rank correlation between these
      attributions and the previous run's attributions of the same examples, from the second
      run on. Higher is better: 1 means the feature ranking did not change (stable
      explanations), 0 unrelated, -1 reversed;
    * ``infidelity`` and ``sensitivity`` (captum.metrics, lower is better) when enabled;
    * files in the one layout of every callback,
      ``xai/<name>/<stage>/attributions/epoch{E}_step{S}.png``, with ``.pt`` (the tensors) and
      ``.json`` next to it. Both record the full method configuration
      (:meth:`~lightning_xai.attribution.AttributionConfig.to_dict`: method, ``n_steps``,
      baseline, layer, ...), the probe indices, the random seed of the run and (``.pt``) the
      mean baseline, enough to rebuild the :class:`~lightning_xai.attribution.Attributor` and
      get the same attributions. When a checkpoint is evaluated (``ckpt_path=``), files,
      titles and TensorBoard steps carry the checkpoint's epoch and global step.

    Non-finite values are flagged, never drawn: probe inputs holding NaN or inf, or
    attributions that come out NaN or inf (non-finite weights, a diverged loss), give one
    warning per stage and quantity naming the stage, epoch and step, and the picture and the
    scalars computed from them are skipped (the ``.pt`` still records them); ``strict=True``
    raises instead. Each run is seeded (``seed``, stage and step), so sampling methods are
    reproducible and the training's random stream is left untouched.

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
            5 epochs) cost about 3.5% of the quickstart's fit time (about 0.1 s a run on a
            CPU, half of it drawing and encoding the picture); each run costs roughly
            ``num_samples * n_steps`` forward and backward passes plus one picture.
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
        scale: colour scaling of the pictures: ``"tile"`` (the default: each example spans ±
            its own largest absolute attribution, so every example's structure shows) or
            ``"shared"`` (one range for all examples, so magnitudes compare); the legend states
            which, with the range.
        name: the tag and folder component (default ``"attribution_logger"``); give each of
            several AttributionLoggers on one trainer its own name.
        seed: seed of the probe-sample choice (and, with the stage and step, of each run).
        verbose: print one line at the end of each stage with the headline figures and where
            the files are.
        strict: raise a ``ValueError`` instead of warning and skipping when probe inputs,
            attributions or scalars are not finite.

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
        scale: Scale = "tile",
        name: str | None = None,
        seed: int = 0,
        verbose: bool = True,
        strict: bool = False,
    ) -> None:
        super().__init__(
            stages=stages,
            every_n_epochs=every_n_epochs,
            num_samples=num_samples,
            seed=seed,
            name=name,
            verbose=verbose,
        )
        if scale not in SCALES:
            raise MisconfigurationException(
                f"`scale={scale!r}` is not supported; use 'tile' (each example on its own "
                "colour range) or 'shared' (one range for every example)."
            )
        for arg, flag in (
            ("strict", strict),
            ("verbose", verbose),
            ("infidelity", infidelity),
            ("sensitivity", sensitivity),
            ("save_attributions", save_attributions),
        ):
            if not isinstance(flag, bool):
                raise MisconfigurationException(f"`{arg}` must be True or False, got {flag!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise MisconfigurationException(f"`seed` must be an integer, got {seed!r}.")
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
        self.scale = scale
        self.strict = strict
        self._flagged: set[tuple[str, str]] = set()
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
        configuration error shows before the first training step. Probe inputs that are not
        finite are flagged (a warning, or an error with ``strict=True``), not a
        configuration error."""
        attributor = self._build(pl_module)
        batch = self.check_batch(trainer, pl_module, stage, limit=2)
        try:
            with (
                self._seeded(pl_module, 0),
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
        except NonFiniteInputError as err:
            self._flag(stage, self.epoch(trainer), self.step(trainer), "the probe inputs", str(err))
            return
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

    @override
    def reporter(self, trainer: pl.Trainer) -> Reporter:
        """The base class's reporter, raising on non-finite values with ``strict=True``."""
        return Reporter(
            trainer,
            self.name,
            strict=self.strict,
            on_scalars=self._remember,
            epoch=self.epoch(trainer),
        )

    def _flag(
        self, stage: str, epoch: int, step: int, quantity: str, detail: str, strict: bool = True
    ) -> None:
        """One warning per stage and quantity that something could not be shown, or a
        ``ValueError`` with ``strict=True``."""
        message = (
            f"{type(self).__name__}(name={self.name!r}) at stage {stage!r}, epoch {epoch}, step "
            f"{step}: {quantity} skipped, not logged: {detail}"
        )
        if self.strict and strict:
            raise ValueError(f"{message} (strict=True raises instead of skipping.)")
        if (stage, quantity) not in self._flagged:
            self._flagged.add((stage, quantity))
            warnings.warn(message, NonFiniteWarning, stacklevel=2)

    @contextmanager
    def _seeded(self, pl_module: pl.LightningModule, seed: int) -> Iterator[None]:
        """Run with the random streams seeded by ``seed``, then restore them (the training's
        random stream is not consumed)."""
        device = pl_module.device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _run_seed(self, stage: str, step: int) -> int:
        return (int(self.seed) * 1_000_003 + int(step) * 8 + STAGES.index(stage)) % (2**31)

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
        reporter = self.reporter(trainer)
        step, epoch = self.step(trainer), self.epoch(trainer)
        split = self._split(trainer, stage)
        seed = self._run_seed(stage, step)
        try:
            with self._seeded(pl_module, seed), warnings.catch_warnings():
                warnings.simplefilter("ignore", NonFiniteAttributionWarning)  # flagged below
                result = attributor.attribute(batch)
        except NonFiniteInputError as err:
            self._flag(stage, epoch, step, "the probe inputs", str(err))
            return
        problem = attributor.diagnose_non_finite(result)
        if problem:
            self._flag(
                stage,
                epoch,
                step,
                "the attributions",
                f"{problem}. The picture, completeness_gap and {RANK_AGREEMENT} are not logged "
                "(the .pt file keeps the values).",
            )
        else:
            self._log_pictures(reporter, result, stage, split, epoch, step)
        reporter.log_scalars(self._scalars(attributor, result, split, stage, epoch, step), step)
        if not problem:
            self.previous[split] = _ranking_view(result).detach().cpu()
        record = {
            "stage": stage,
            "split": split,
            "epoch": epoch,
            "step": step,
            "probe_indices": list(self.probe_indices.get(split, [])),
            "method": result.method,
            "layer": result.layer,
            "config": attributor.config_dict(),
            "forward_fn": self.forward_fn,
            "adapter": repr(self.adapter),
            "rng_seed": seed,
            "scale": self.scale,
            "finite": not problem,
        }
        tag = self.tag(stage, "attributions")
        reporter.save(reporter.file_for(tag, step, ".json"), record)
        if self.save_attributions:
            mean = attributor.mean_baseline
            payload = {
                **record,
                "attributions": _cpu(result.attributions),
                "inputs": _cpu(result.inputs),
                "targets": _maybe_cpu(result.targets),
                "labels": _maybe_cpu(result.labels),
                "predictions": _maybe_cpu(result.predictions),
                "probabilities": _maybe_cpu(result.probabilities),
                "output_delta": _maybe_cpu(result.output_delta),
                "mask": _maybe_cpu(result.mask),
                "mean_baseline": _maybe_cpu(mean),
            }
            reporter.save(reporter.file_for(tag, step, ".pt"), payload)

    def _split(self, trainer: pl.Trainer, stage: str) -> str:
        if stage == "test":
            return "test"
        if stage == "fit" and not self._validates(trainer):
            return "train"
        return "val"

    def _log_pictures(
        self,
        reporter: Reporter,
        result: AttributionResult,
        stage: str,
        split: str,
        epoch: int,
        step: int,
    ) -> None:
        title = self._title(result, stage, epoch, step)
        captions = self._captions(result, split)
        names = self._input_names(result.num_inputs)
        for i, (attributions, inputs) in enumerate(result.parts()):
            key = "attributions" if result.num_inputs == 1 else f"attributions/{names[i]}"
            heading = title if result.num_inputs == 1 else f"{title} · input {names[i]}"
            tag = self.tag(stage, key)
            if input_kind(inputs) == "tokens":
                tokens = token_strings(inputs, self.vocabulary)
                markdown = token_markdown(
                    tokens, attributions, result.mask, captions, heading, scale=self.scale
                )
                text_tag = self.tag(
                    stage, "tokens" if result.num_inputs == 1 else f"tokens/{names[i]}"
                )
                reporter.log_text(
                    text_tag, markdown, step, reporter.file_for(text_tag, step, ".md")
                )
                shown = attributions if result.mask is None else attributions * result.mask
                picture = annotate(
                    token_image(tokens, attributions, result.mask, captions, scale=self.scale),
                    heading,
                    scale=self.scale,
                    limits=colour_limits(shown, self.scale),
                    note="each block: one example, its tokens on the colour of their "
                    "attribution (padding left out)",
                )
            else:
                picture = self._picture(attributions, inputs, result.method, captions, heading)
            reporter.log_image(tag, picture, step, reporter.file_for(tag, step, ".png"))

    def _title(self, result: AttributionResult, stage: str, epoch: int, step: int) -> str:
        method = result.method
        if result.layer:
            method += (
                f" of layer {result.layer}"
                if self.spec.needs_layer
                else (f" through {result.layer}")
            )
        if self.label_free:
            what = "label-free: explaining the representation"
        elif self.target is None or self.target == "pred":
            what = "explaining the predicted class"
        elif isinstance(self.target, str):
            what = "explaining the label"
        elif isinstance(self.target, int):
            what = f"explaining class {self.target}"
        else:
            what = "explaining the given classes"
        return f"{method} · {what} · {stage} · epoch {epoch} · step {step}"

    def _captions(self, result: AttributionResult, split: str) -> list[str]:
        n = len(result.parts()[0][0])
        indices = self.probe_indices.get(split, [])
        captions = []
        for k in range(n):
            parts = [f"example {indices[k]}" if k < len(indices) else f"example #{k}"]
            if result.labels is not None:
                parts.append(f"label {int(result.labels[k])}")
            if result.predictions is not None and result.probabilities is not None:
                parts.append(
                    f"pred {int(result.predictions[k])} ({float(result.probabilities[k]):.2f})"
                )
            if result.targets is not None:
                parts.append(f"target {int(result.targets[k])}")
            captions.append(" · ".join(parts))
        return captions

    def _input_names(self, count: int) -> list[str]:
        keys = self.adapter.inputs
        if isinstance(keys, tuple) and len(keys) == count:
            return [str(k) for k in keys]
        return [f"input{i}" for i in range(count)]

    def _picture(
        self, attributions: Tensor, inputs: Tensor, method: str, captions: list[str], title: str
    ) -> np.ndarray:
        maps = cast(Tensor, AttributionResult(attributions, inputs, None, method).heatmaps())
        kind = input_kind(inputs)
        if kind == "image" and maps.dim() == 3:
            return attribution_grid(inputs, maps, captions, title=title, scale=self.scale)
        if kind == "signal" and maps.dim() == 2 and maps.shape[1] == inputs.shape[-1]:
            rows = min(len(maps), 8)
            chart = signal_chart(inputs, maps, captions, scale=self.scale, max_rows=rows)
            shown = (
                f"the first {rows} of {len(maps)} examples"
                if rows < len(maps)
                else (f"{rows} examples")
            )
            return annotate(
                chart,
                title,
                scale=self.scale,
                limits=colour_limits(maps[:rows], self.scale),
                note=f"each row: one example ({shown}); the line's colour is the attribution "
                "at that step",
            )
        names = self.feature_names
        if names is not None and len(names) != maps[0].numel():
            names = None
        chart = attribution_bar_chart(maps, feature_names=names, top_k=self.top_k)
        return annotate(
            chart,
            title,
            legend=False,
            note=f"bars: mean signed attribution of each feature over the {len(maps)} probe "
            "examples (red raises the explained score, blue lowers it)",
        )

    def _scalars(
        self,
        attributor: Attributor,
        result: AttributionResult,
        split: str,
        stage: str,
        epoch: int,
        step: int,
    ) -> dict[str, float]:
        if result.non_finite():
            return {}  # flagged once by the caller
        scalars: dict[str, float] = {}
        gap = result.relative_completeness_gap
        if gap is not None:
            scalars[self.tag(stage, "completeness_gap")] = gap
        previous = self.previous.get(split)
        current = _ranking_view(result).cpu()
        if previous is not None and previous.shape == current.shape:
            agreement = float(attribution_rank_correlation(previous, current))
            if math.isnan(agreement):
                self._flag(
                    stage,
                    epoch,
                    step,
                    RANK_AGREEMENT,
                    "every probe example has constant attributions (e.g. all zero) now or in "
                    "the previous run, so there is no ranking to compare",
                    strict=False,
                )
            else:
                scalars[self.tag(stage, RANK_AGREEMENT)] = agreement
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


def _ranking_view(result: AttributionResult) -> Tensor:
    """One tensor per result for the rank agreement (several inputs: concatenated)."""
    return result.attributions if isinstance(result.attributions, Tensor) else result.flat()


def _maybe_cpu(value: Tensor | None) -> Tensor | None:
    return None if value is None else value.detach().cpu()


def _cpu(value: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    if isinstance(value, tuple):
        return tuple(v.detach().cpu() for v in value)
    return value.detach().cpu()
