"""Log attributions of fixed probe samples during ``fit``, ``validate`` and ``test``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from torch.utils.data import DataLoader
from typing_extensions import override

from lightning_xai.attribution import AttributionResult, Attributor
from lightning_xai.attribution.attributor import (
    NoiseTunnelType,
    TargetLike,
    check_arguments,
)
from lightning_xai.attribution.baselines import BaselineLike
from lightning_xai.attribution.methods import MethodLike
from lightning_xai.callbacks.base import STAGES, Stage, XAICallback
from lightning_xai.metrics.functional.attribution import attribution_rank_correlation
from lightning_xai.utilities.validation import check_positive_int
from lightning_xai.viz.attribution import attribution_bar_chart, attribution_grid

__all__ = ["AttributionLogger"]


class AttributionLogger(XAICallback):
    """Attribute the model's outputs to the inputs of fixed probe samples and log the result.

    At the end of validation epochs (``fit``, ``validate``) and of the test epoch (``test``) it
    runs an attribution method (any captum method, see
    :class:`~lightning_xai.attribution.Attributor`) on ``num_samples`` fixed examples, on global
    rank zero only, and logs under ``<stage>/attribution_logger/``:

    * ``attributions``: for images, a grid of each input next to its signed heatmap overlay;
      for tabular or 1-D inputs, a bar chart of the mean ``|attribution|`` per feature;
    * ``completeness_gap``: for methods with a completeness property, the relative gap between
      the summed attributions and ``f(x) - f(baseline)`` (a warning names the fix when it is
      large);
    * ``drift``: the Spearman rank correlation with the previous run's attributions of the same
      examples (1 = same ranking), from the second run on;
    * ``infidelity`` and ``sensitivity`` (captum.metrics) when enabled;
    * the raw attributions as ``xai/attribution_logger/<stage>/epoch<E>_step<S>.pt`` (next to
      the picture's ``.png``).

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
            LightningModule (a leading ``model.`` may be left out).
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
        completeness_threshold: warn when the relative completeness gap exceeds it.
        infidelity: also log captum's infidelity (input attribution methods only).
        sensitivity: also log captum's max-sensitivity (costs several extra attributions).
        feature_names: names of the features for the bar chart of non-image inputs.
        top_k: number of features shown in the bar chart.
        mean_samples: training inputs read for ``baseline="mean"``.
        save_attributions: write the raw ``.pt`` file each run.
        name: the tag and folder component (default ``"attribution_logger"``); give each of
            several AttributionLoggers on one trainer its own name.
        seed: seed of the probe-sample choice.

    Example:
        >>> from lightning_xai.callbacks import AttributionLogger
        >>> cb = AttributionLogger("integrated_gradients", num_samples=8, stages=("fit",))
        >>> cb.attribution_kwargs["method_kwargs"]
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
        completeness_threshold: float | None = 0.1,
        infidelity: bool = False,
        sensitivity: bool = False,
        feature_names: Sequence[str] | None = None,
        top_k: int = 20,
        mean_samples: int = 2048,
        save_attributions: bool = True,
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
        settings: dict[str, Any] = dict(
            layer=layer,
            baseline=baseline,
            target=explained_target,
            label_free=label_free,
            noise_tunnel=noise_tunnel,
            nt_samples=nt_samples,
            nt_stdevs=nt_stdevs,
            internal_batch_size=internal_batch_size,
            method_kwargs=dict(method_kwargs)
            if isinstance(method_kwargs, Mapping)
            else method_kwargs,
            completeness_threshold=completeness_threshold,
        )
        try:
            spec = check_arguments(method, **settings)
        except (ValueError, TypeError) as err:
            raise MisconfigurationException(str(err)) from err
        kwargs = settings["method_kwargs"] = dict(settings["method_kwargs"] or {})
        if "n_steps" in spec.accepts and "n_steps" not in kwargs:
            kwargs["n_steps"] = self.DEFAULT_N_STEPS
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
        self.method = method
        self.spec = spec
        self.target = target
        self.label_free = label_free
        self.forward_fn = forward_fn
        self.infidelity = infidelity
        self.sensitivity = sensitivity
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.top_k = top_k
        self.mean_samples = mean_samples
        self.save_attributions = save_attributions
        self.attribution_kwargs = settings
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

    # ------------------------------------------------------------------ setup
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Build the attributor on every rank, so that a bad ``layer`` or ``forward_fn`` fails
        everywhere before any training step."""
        super().setup(trainer, pl_module, stage)  # distinct names
        self._build(pl_module)

    def _build(self, pl_module: pl.LightningModule) -> Attributor:
        if self.attributor is not None and self._module_id == id(pl_module):
            return self.attributor
        try:
            self.attributor = Attributor(
                pl_module,
                self.method,
                forward_fn=self._forward_fn(pl_module),
                **self.attribution_kwargs,
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
        inputs, labels = _split_batch(batch)
        if attributor.baseline == "mean" and attributor.mean_baseline is None:
            attributor.fit_baseline(self._training_inputs(trainer), max_samples=self.mean_samples)
        result = attributor.attribute(inputs, labels)
        split = "test" if stage == "test" else "val"
        reporter = self.reporter(trainer)
        step = self.step(trainer)
        stem = f"{stage}/epoch{trainer.current_epoch:04d}_step{step:07d}"
        reporter.log_image(
            self.tag(stage, "attributions"), self._picture(result), step, f"{stem}.png"
        )
        reporter.log_scalars(self._scalars(attributor, result, split, stage), step)
        self.previous[split] = result.attributions.detach().cpu()
        if self.save_attributions:
            payload = {
                "attributions": result.attributions.detach().cpu(),
                "inputs": result.inputs.detach().cpu(),
                "targets": None if result.targets is None else result.targets.cpu(),
                "output_delta": None if result.output_delta is None else result.output_delta.cpu(),
                "probe_indices": list(self.probe_indices.get(split, [])),
                "method": result.method,
                "layer": result.layer,
                "epoch": int(trainer.current_epoch),
                "step": step,
            }
            reporter.save(f"{stem}.pt", payload)

    def _picture(self, result: AttributionResult) -> Any:
        maps = result.heatmaps()
        if result.inputs.dim() == 4 and maps.dim() == 3:
            return attribution_grid(result.inputs, maps)
        return attribution_bar_chart(
            maps, feature_names=self.feature_names, top_k=self.top_k, title=result.method
        )

    def _scalars(
        self, attributor: Attributor, result: AttributionResult, split: str, stage: str
    ) -> dict[str, float]:
        scalars: dict[str, float] = {}
        gap = result.relative_completeness_gap
        if gap is not None:
            scalars[self.tag(stage, "completeness_gap")] = gap
        previous = self.previous.get(split)
        if previous is not None and previous.shape == result.attributions.shape:
            drift = float(attribution_rank_correlation(previous, result.attributions.cpu()))
            if not math.isnan(drift):
                scalars[self.tag(stage, "drift")] = drift
        if self.infidelity:
            scalars[self.tag(stage, "infidelity")] = float(attributor.infidelity(result).mean())
        if self.sensitivity:
            scalars[self.tag(stage, "sensitivity")] = float(attributor.sensitivity(result).mean())
        return scalars

    def _training_inputs(self, trainer: pl.Trainer) -> Any:
        try:
            dataset = self.dataset_of(trainer, "train")
        except MisconfigurationException as err:
            raise MisconfigurationException(
                f"`baseline='mean'` needs the training data: {err} Or pass the mean input as a "
                "tensor: baseline=<tensor>."
            ) from err
        x = getattr(dataset, "x", None)
        if isinstance(x, Tensor):
            return x
        return DataLoader(dataset, batch_size=256, shuffle=False)  # type: ignore[arg-type]

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


def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, tuple | list) and batch and isinstance(batch[0], Tensor):
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return batch[0], labels
    if isinstance(batch, Mapping) and isinstance(batch.get("x"), Tensor):
        return batch["x"], batch.get("y")
    raise MisconfigurationException(
        "AttributionLogger needs probe samples that are a tensor, a tuple (x, y, ...) or a dict "
        f"with 'x'; got {type(batch).__name__}."
    )
