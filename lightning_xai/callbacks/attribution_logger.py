"""Log attributions of fixed probe samples during ``fit``, ``validate`` and ``test``."""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

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
from lightning_xai.callbacks.base import STAGES, Stage, TrainDataLike, XAICallback, check_adapter
from lightning_xai.metrics.functional import (
    RandomisationResult,
    complexity,
    faithfulness_correlation,
    max_sensitivity,
    parameter_randomisation,
    pixel_flipping,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
)
from lightning_xai.metrics.functional.attribution import attribution_rank_correlation
from lightning_xai.utilities.batches import AdaptedBatch, BatchAdapter, resolve_callable
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

__all__ = ["DEFAULT_QUALITY", "QUALITY_METRICS", "RANK_AGREEMENT", "AttributionLogger"]

#: The scalar comparing each run's attributions with the previous run's (higher = more stable).
RANK_AGREEMENT = "rank_agreement_with_previous"

VocabularyLike = Sequence[str] | Callable[..., Any] | str | None
MaskLike = int | str | Callable[[Any], Tensor] | None
MaskMeaning = Literal["evidence", "forbidden"]


@dataclass(frozen=True)
class _Quality:
    """How a quality metric is computed and named."""

    function: Callable[..., Any]
    higher_is_better: bool
    needs: Literal["attributions", "model", "mask", "explain", "randomise"]
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


#: The explanation-quality metrics ``AttributionLogger(quality=[...])`` accepts, with the
#: functional metric each one calls (:mod:`lightning_xai.metrics.functional`).
QUALITY_METRICS: dict[str, _Quality] = {
    "deletion_auc": _Quality(pixel_flipping, False, "model", {"mode": "deletion"}),
    "insertion_auc": _Quality(pixel_flipping, True, "model", {"mode": "insertion"}),
    "faithfulness_correlation": _Quality(faithfulness_correlation, True, "model"),
    "sparseness": _Quality(sparseness, True, "attributions"),
    "complexity": _Quality(complexity, False, "attributions"),
    "relevance_mass": _Quality(relevance_mass_accuracy, True, "mask"),
    "relevance_rank": _Quality(relevance_rank_accuracy, True, "mask"),
    "pointing_game": _Quality(pointing_game, True, "mask"),
    "max_sensitivity": _Quality(max_sensitivity, False, "explain"),
    "randomisation": _Quality(parameter_randomisation, False, "randomise"),
}

#: The cheap metrics logged by default (``relevance_mass`` too when ``mask=`` is given).
DEFAULT_QUALITY: tuple[str, ...] = ("deletion_auc", "sparseness")

#: Curve steps of ``deletion_auc``/``insertion_auc`` unless ``features_per_step`` is given:
#: features are flipped in ``ceil(features / 16)``-sized steps, at most 17 points a curve.
QUALITY_CURVE_POINTS = 16

_FIXED_ARGUMENTS = {
    "forward_func",
    "inputs",
    "attributions",
    "target",
    "mask",
    "explain_fn",
    "model",
    "additional_forward_args",
    "mode",
}


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
    * explanation quality, one scalar per metric in ``quality`` at every run, under
      ``quality/<metric>_<direction>`` where the direction is ``higher_is_better`` or
      ``lower_is_better`` (e.g. ``fit/attribution_logger/quality/deletion_auc_lower_is_better``):
      the mean over the probe examples of the functional metric of
      :mod:`lightning_xai.metrics.functional` called on the same probes, attributions and
      explained targets (the per-example values go into the ``.json`` file, and a markdown
      table ``quality`` into TensorBoard's Text tab). The metrics, all at the functional
      defaults unless ``quality_kwargs`` says otherwise:

      - ``deletion_auc`` (lower is better) / ``insertion_auc`` (higher is better):
        :func:`~lightning_xai.metrics.functional.pixel_flipping` of the most relevant features
        first, the target's probability, baseline 0, in steps of ``ceil(features / 16)``
        features;
      - ``faithfulness_correlation`` (higher is better);
      - ``sparseness`` (higher is better) and ``complexity`` (lower is better) of the
        attributions as computed (several inputs: concatenated);
      - with ``mask=``: ``relevance_mass``, ``relevance_rank`` and ``pointing_game`` of
        ``|attributions|`` against the annotation mask, over the probes whose mask is not
        empty. For ``mask_meaning="evidence"`` (the mask marks what the model should use)
        higher is better; for ``"forbidden"`` (a decoy patch, a right-reasons mask) the tag is
        ``forbidden_<metric>_lower_is_better``;
      - ``max_sensitivity`` (lower is better): the attribution of the same targets under
        uniform noise of radius 0.02, 10 samples;
      - ``randomisation`` (costly, not a default): the cascading model parameter
        randomisation test on a copy of the module. The scalar
        ``randomisation_spearman_support_lower_is_better`` is the mean over layers and
        examples of the Spearman correlation of ``|attributions|`` on the input's support
        before and after randomisation; a picture ``randomisation`` plots every similarity
        (Spearman over all features, over the support, SSIM) per randomised layer.

      Metrics that perturb inputs (faithfulness, ``max_sensitivity``) and the localisation
      metrics use input-shaped attributions: layer attributions (Grad-CAM) are upsampled to
      the input (:meth:`~lightning_xai.attribution.AttributionResult.heatmaps`); they need one
      explained floating-point input (localisation and randomisation also take token ids);
      :meth:`check` says so before training.
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
        quality: the explanation-quality metrics logged at every run, any of
            :data:`QUALITY_METRICS` (``[]`` for none). Default: ``deletion_auc`` and
            ``sparseness``, plus ``relevance_mass`` when ``mask`` is given; with integers
            token ids or several explained inputs only ``sparseness`` (and
            ``relevance_mass``). On the quickstart (16 probes of 8x8 digits) the defaults
            cost about 0.05-0.1 s of CPU a run, less than the attribution itself.
        quality_kwargs: keyword arguments of a metric's functional, per metric name, e.g.
            ``{"deletion_auc": {"features_per_step": 1, "baseline": "blur"}}``.
        mask: where the annotation mask of a probe batch is: an index (``2`` for ``(x, y,
            mask)``), a key, or a callable ``batch -> mask`` (or its dotted import path). It
            broadcasts to the input-shaped attributions (per token for token ids).
        mask_meaning: ``"evidence"`` (the mask marks what the model should rely on) or
            ``"forbidden"`` (what it must not rely on); sets the score direction of the
            localisation metrics.

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
        quality: Sequence[str] | None = None,
        quality_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        mask: MaskLike = None,
        mask_meaning: MaskMeaning = "evidence",
    ) -> None:
        super().__init__(
            stages=stages,
            every_n_epochs=every_n_epochs,
            num_samples=num_samples,
            seed=seed,
            name=name,
            verbose=verbose,
            strict=strict,
        )
        if scale not in SCALES:
            raise MisconfigurationException(
                f"`scale={scale!r}` is not supported; use 'tile' (each example on its own "
                "colour range) or 'shared' (one range for every example)."
            )
        for arg, flag in (
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
        check_adapter(adapter, "BatchAdapter(inputs='input_ids', labels='labels')")
        if feature_names is not None and (
            isinstance(feature_names, str) or not all(isinstance(f, str) for f in feature_names)
        ):
            raise MisconfigurationException(
                f"`feature_names` must be a list of strings, got {feature_names!r}."
            )
        self.mask = _mask_spec(mask)
        if mask_meaning not in ("evidence", "forbidden"):
            raise MisconfigurationException(
                f"`mask_meaning={mask_meaning!r}` is not supported; use 'evidence' (the mask "
                "marks what the model should use) or 'forbidden' (what it must not use)."
            )
        self.mask_meaning = mask_meaning
        self.quality, self.quality_kwargs = _quality_options(
            quality, quality_kwargs, has_mask=self.mask is not None, label_free=label_free
        )
        if "randomisation" in (self.quality or ()) and not isinstance(method, str | type):
            raise MisconfigurationException(
                "`quality=['randomisation']` explains randomised copies of the module, which "
                f"needs the method by name or class, got the instance {method!r}; pass "
                "method=<name> with init_kwargs=... instead."
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
        names = self.quality_names(result)
        try:
            with self._seeded(pl_module, 0), eval_mode(pl_module), grad_enabled():
                self.quality_values(pl_module, result, batch)
        except (ValueError, TypeError, RuntimeError, IndexError, KeyError) as err:
            raise MisconfigurationException(
                f"{type(self).__name__}(name={self.name!r}) cannot compute `quality={list(names)}` "
                f"on its probe samples: {err}"
            ) from err

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
        quality: dict[str, float] = {}
        quality_record: dict[str, Any] = {}
        if not problem:
            try:
                with self._seeded(pl_module, seed):
                    values, randomised = self.quality_values(pl_module, result, batch)
            except (ValueError, TypeError, RuntimeError) as err:
                self._flag(stage, epoch, step, "the quality metrics", str(err))
            else:
                quality, quality_record = self._log_quality(
                    reporter, values, randomised, stage, epoch, step
                )
        scalars = self._scalars(attributor, result, split, stage, epoch, step)
        reporter.log_scalars({**scalars, **quality}, step)
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
            "quality": quality_record,
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

    # ------------------------------------------------------------------ quality
    def quality_names(self, result: AttributionResult) -> tuple[str, ...]:
        """The quality metrics logged for ``result``: ``quality`` when given, else the
        defaults that apply to its inputs (:data:`DEFAULT_QUALITY`, ``relevance_mass`` with
        ``mask=``; no perturbation metric for token ids or several explained inputs)."""
        if self.quality is not None:
            return self.quality
        names = [*DEFAULT_QUALITY, *(["relevance_mass"] if self.mask is not None else [])]
        perturbable = result.num_inputs == 1 and result.parts()[0][1].is_floating_point()
        return tuple(
            n
            for n in names
            if (perturbable or QUALITY_METRICS[n].needs not in ("model", "explain"))
            and not (self.label_free and QUALITY_METRICS[n].needs not in ("attributions", "mask"))
        )

    def quality_tag(self, metric: str) -> str:
        """The key of ``metric``'s scalar (under ``<stage>/<name>/``), stating its direction."""
        spec = QUALITY_METRICS[metric]
        if metric == "randomisation":
            return "quality/randomisation_spearman_support_lower_is_better"
        if spec.needs == "mask" and self.mask_meaning == "forbidden":
            return f"quality/forbidden_{metric}_lower_is_better"
        return f"quality/{metric}_{'higher' if spec.higher_is_better else 'lower'}_is_better"

    def read_mask(self, batch: Any, like: Tensor) -> Tensor:
        """The annotation mask of ``batch`` (``mask=``), as a bool tensor shaped like ``like``."""
        spec = self.mask
        if callable(spec):
            mask = spec(batch)
        else:
            try:
                mask = batch[spec]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"`mask={spec!r}` is not in the probe batch (a {type(batch).__name__}); point "
                    "`mask=` at the annotation mask: an index, a key or a callable batch -> mask."
                ) from None
        if not isinstance(mask, Tensor):
            raise ValueError(
                f"`mask={spec!r}` gives a {type(mask).__name__}, not a tensor; point it at the "
                "annotation mask of the batch."
            )
        if len(mask) != len(like):
            raise ValueError(
                f"`mask={spec!r}` has {len(mask)} rows for {len(like)} probe examples; it must "
                "hold one mask per example."
            )
        if mask.ndim == like.ndim - 1 and like.shape[1] == 1:
            mask = mask.unsqueeze(1)  # (N, H, W) masks of (N, 1, H, W) attributions
        try:
            return mask.to(like.device).bool().expand_as(like)
        except RuntimeError:
            raise ValueError(
                f"`mask={spec!r}` has shape {tuple(mask.shape)}, which does not broadcast to the "
                f"input-shaped attributions {tuple(like.shape)}; give one mask value per input "
                "feature (per token for token ids)."
            ) from None

    def quality_values(
        self, pl_module: pl.LightningModule, result: AttributionResult, batch: Any
    ) -> tuple[dict[str, Tensor], RandomisationResult | None]:
        """Per-example values of every quality metric on ``result`` (the attributions of the
        probe ``batch``), and the randomisation test's result when it ran.

        Raises:
            ValueError: a metric cannot be computed for this model, input or mask.
        """
        names = self.quality_names(result)
        values: dict[str, Tensor] = {}
        randomised = None
        if not names:
            return values, None
        fn = self._forward_fn(pl_module) or pl_module
        adapted = self.adapter.split(batch, fn)
        extras = adapted.extras or None
        for name in names:
            spec = QUALITY_METRICS[name]
            kwargs = {**spec.defaults, **self.quality_kwargs.get(name, {})}
            if spec.needs == "attributions":
                values[name] = spec.function(result.flat(), **kwargs)
                continue
            attributions, inputs = _input_view(result, name)
            if spec.needs == "mask":
                mask = self.read_mask(batch, attributions)
                keep = mask.flatten(1).any(1)
                if bool(keep.any()):  # probes with an empty mask have nothing to localise
                    values[name] = spec.function(attributions[keep], mask[keep], **kwargs)
                continue
            if result.targets is None:
                raise ValueError(f"`quality` metric {name!r} needs class scores and a target.")
            if spec.needs != "randomise" and not inputs.is_floating_point():
                raise ValueError(
                    f"`quality` metric {name!r} perturbs the inputs, which are {inputs.dtype} "
                    "(token ids); use 'sparseness', 'complexity', 'randomisation' or the mask "
                    "metrics for them."
                )
            if spec.needs == "model":
                if spec.function is pixel_flipping and "features_per_step" not in kwargs:
                    features = math.prod(attributions.shape[1:])
                    kwargs["features_per_step"] = max(1, -(-features // QUALITY_CURVE_POINTS))
                out = spec.function(
                    adapted.forward_func(fn),
                    inputs,
                    attributions,
                    result.targets,
                    additional_forward_args=extras,
                    **kwargs,
                )
                values[name] = out.auc if hasattr(out, "auc") else out
            elif spec.needs == "explain":
                values[name] = spec.function(
                    self._explain_fn(adapted),
                    inputs,
                    result.targets,
                    additional_forward_args=extras,
                    **kwargs,
                )
            else:
                randomised = spec.function(
                    pl_module,
                    inputs,
                    result.targets,
                    self._randomised_explain_fn(batch),
                    attributions=attributions,
                    **kwargs,
                )
                values[name] = randomised.spearman_support.mean(0)
        return values, randomised

    def _explain_fn(self, adapted: AdaptedBatch) -> Callable[..., Tensor]:
        """``explain_fn(inputs, target, *extras)``: the configured method's input-shaped
        attributions of the given targets (for robustness metrics)."""
        attributor = cast(Attributor, self.attributor)

        def explain(x: Tensor, target: Tensor, *extras: Any) -> Tensor:
            batch = dataclasses.replace(adapted, inputs=(x,), extras=tuple(extras), labels=None)
            attributor.forward_func.batch = batch  # type: ignore[assignment]
            try:
                baselines = attributor._baselines((x,), attributor.spec, False, bool(extras))
                out = attributor._explain(
                    (x,), tuple(extras), target, baselines, attributor.spec, False
                )
            finally:
                attributor.forward_func.batch = None  # type: ignore[assignment]
            view = AttributionResult(out[0].detach(), x.detach(), target, attributor.name)
            return _input_view(view, "max_sensitivity")[0]

        return explain

    def _randomised_explain_fn(self, batch: Any) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
        """``explain_fn(model, inputs, target)`` for the randomisation test: the configured
        method on a copy of the module, explaining the given targets of the probe ``batch``
        (whose explained input is ``inputs``)."""
        mean = cast(Attributor, self.attributor).mean_baseline

        def explain(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
            attributor = Attributor(
                model,
                self.config.replace(target=target, check_hooks=False),
                adapter=self.adapter,
                forward_fn=self._forward_fn(model),  # type: ignore[arg-type]
            )
            attributor.mean_baseline = mean
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AttributionWarning)
                result = attributor.attribute(batch)
            return _input_view(result, "randomisation")[0]

        return explain

    def _log_quality(
        self,
        reporter: Reporter,
        values: Mapping[str, Tensor],
        randomised: RandomisationResult | None,
        stage: str,
        epoch: int,
        step: int,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """The quality scalars, their record for the ``.json`` file, and the markdown table
        (and the randomisation picture) logged."""
        scalars: dict[str, float] = {}
        record: dict[str, Any] = {}
        rows = []
        for name, per_example in values.items():
            key = self.quality_tag(name)
            mean = float(per_example.float().mean())
            scalars[self.tag(stage, key)] = mean
            record[name] = {"tag": key, "mean": mean, "per_example": per_example.tolist()}
            rows.append(
                f"| {name} | {mean:.4g} | {key.rsplit('_', 3)[-3]} is better | {len(per_example)} |"
            )
        if rows:
            tag = self.tag(stage, "quality")
            table = (
                f"**Explanation quality** of {self.spec.name} · {stage} · epoch {epoch} · step "
                f"{step} (mean over probe examples)\n\n| metric | value | direction | examples "
                "|\n|---|---|---|---|\n" + "\n".join(rows)
            )
            reporter.log_text(tag, table, step, reporter.file_for(tag, step, ".md"))
        if randomised is not None:
            tag = self.tag(stage, "randomisation")
            title = (
                f"Parameter randomisation test of {self.spec.name} · {stage} · epoch {epoch} · "
                f"step {step}"
            )
            picture = randomisation_picture(randomised, title)
            reporter.log_image(tag, picture, step, reporter.file_for(tag, step, ".png"))
            record["randomisation"]["layers"] = list(randomised.layers)
            record["randomisation"]["per_layer"] = {
                k: v.float().mean(1).tolist() for k, v in randomised.as_dict().items()
            }
        return scalars, record

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


def _mask_spec(mask: MaskLike) -> MaskLike:
    spec = resolve_callable(mask) if isinstance(mask, str) and "." in mask else mask
    if isinstance(spec, bool) or not (
        spec is None or callable(spec) or isinstance(spec, int | str)
    ):
        raise MisconfigurationException(
            f"`mask` must be None, an index, a key, a callable batch -> mask or its dotted import "
            f"path, got {mask!r}."
        )
    return spec


def _quality_options(
    quality: Sequence[str] | None,
    quality_kwargs: Mapping[str, Mapping[str, Any]] | None,
    *,
    has_mask: bool,
    label_free: bool,
) -> tuple[tuple[str, ...] | None, dict[str, dict[str, Any]]]:
    """Validate ``quality`` and ``quality_kwargs`` (names, arguments, needs)."""
    allowed = sorted(QUALITY_METRICS)
    if quality is not None:
        if isinstance(quality, str) or not all(isinstance(q, str) for q in quality):
            raise MisconfigurationException(
                f"`quality` must be a list of metric names, got {quality!r}; e.g. "
                "quality=['deletion_auc', 'sparseness']."
            )
        unknown = [q for q in quality if q not in QUALITY_METRICS]
        if unknown:
            raise MisconfigurationException(
                f"`quality` names unknown metrics {unknown}; choose from {allowed}."
            )
        quality = tuple(dict.fromkeys(quality))
        masked = [q for q in quality if QUALITY_METRICS[q].needs == "mask"]
        if masked and not has_mask:
            raise MisconfigurationException(
                f"`quality` metrics {masked} compare attributions with an annotation mask, but "
                "`mask` is None; say where the mask is in a batch (mask=2 for (x, y, mask), a "
                "key or a callable) or drop them."
            )
        needs_target = [
            q for q in quality if QUALITY_METRICS[q].needs in ("model", "explain", "randomise")
        ]
        if label_free and needs_target:
            raise MisconfigurationException(
                f"`quality` metrics {needs_target} score a class, but label_free=True explains "
                "a representation; use 'sparseness', 'complexity' or the mask metrics."
            )
    kwargs: dict[str, dict[str, Any]] = {}
    for name, options in (quality_kwargs or {}).items():
        if name not in QUALITY_METRICS:
            raise MisconfigurationException(
                f"`quality_kwargs` names unknown metric {name!r}; choose from {allowed}."
            )
        if not isinstance(options, Mapping):
            raise MisconfigurationException(
                f"`quality_kwargs[{name!r}]` must be a mapping of keyword arguments, got "
                f"{options!r}."
            )
        params = inspect.signature(QUALITY_METRICS[name].function).parameters
        accepted = sorted(p for p in params if p not in _FIXED_ARGUMENTS)
        bad = [k for k in options if k not in accepted]
        if bad:
            raise MisconfigurationException(
                f"`quality_kwargs[{name!r}]` has unknown arguments {bad}; "
                f"{QUALITY_METRICS[name].function.__name__} accepts {accepted}."
            )
        kwargs[name] = dict(options)
    return quality, kwargs


def _input_view(result: AttributionResult, metric: str) -> tuple[Tensor, Tensor]:
    """Input-shaped attributions and the input of a one-input ``result``: the attributions
    themselves, or for layer attributions the heatmaps upsampled to the input, with one
    channel broadcasting over the input's channels."""
    if result.num_inputs != 1:
        raise ValueError(
            f"`quality` metric {metric!r} needs one explained input, but the adapter explains "
            f"{result.num_inputs}; explain one (BatchAdapter(inputs=...)) or use 'sparseness' "
            "or 'complexity'."
        )
    attributions, inputs = result.parts()[0]
    if attributions.ndim == inputs.ndim:
        try:
            if torch.broadcast_shapes(attributions.shape, inputs.shape) == inputs.shape:
                return attributions, inputs
        except RuntimeError:
            pass
    maps = cast(Tensor, result.heatmaps())
    if maps.ndim == inputs.ndim - 1 and maps.shape[1:] == inputs.shape[2:]:
        return maps.unsqueeze(1), inputs
    raise ValueError(
        f"`quality` metric {metric!r} needs attributions shaped like the input "
        f"{tuple(inputs.shape)}, got {tuple(attributions.shape)} from {result.method}; use "
        "'sparseness' or 'complexity' for them."
    )


def randomisation_picture(result: RandomisationResult, title: str) -> np.ndarray:
    """A titled line chart of the parameter randomisation test: the similarity of the
    attributions before and after randomising each layer (mean over the probe examples).

    Example:
        >>> res = RandomisationResult(["fc2", "fc1"], torch.rand(2, 3), torch.rand(2, 3),
        ...                           torch.rand(2, 3))
        >>> randomisation_picture(res, "saliency · test · epoch 3 · step 30").dtype.name
        'uint8'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = {
        "spearman": "Spearman rank correlation of |attribution|, all features",
        "spearman_support": "Spearman, on the input's support (nonzero inputs) only",
        "ssim": "SSIM of |attribution| / max",
    }
    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = np.arange(1, len(result.layers) + 1)
    for (name, values), marker in zip(result.as_dict().items(), "osd"):
        mean = values.float().mean(1).cpu().numpy()
        ax.plot(steps, mean, marker=marker, label=labels[name])
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(steps, [f"+{layer}" for layer in result.layers], rotation=20, fontsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_xlabel("layers randomised so far (cascading from the output layer down)")
    n = int(result.spearman.shape[1]) if result.spearman.ndim == 2 else 0
    ax.set_ylabel(
        f"similarity to the trained model's attributions\n(mean over {n} examples; lower is better)",
        fontsize=9,
    )
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.text(
        0.01,
        0.01,
        "An explanation that depends on the learned weights changes as they are randomised: "
        "the curves should fall.",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


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
