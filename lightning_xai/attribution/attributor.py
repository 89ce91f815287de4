"""One object that computes attributions with any captum method, supervised or label-free."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch
from captum.attr import (
    Attribution,
    DeepLift,
    DeepLiftShap,
    LayerDeepLift,
    LayerDeepLiftShap,
    NoiseTunnel,
)
from torch import Tensor, nn

from lightning_xai.attribution.baselines import (
    BaselineLike,
    make_baseline,
    mean_input,
    validate_baseline,
)
from lightning_xai.attribution.checks import FIX_HINT, HookHazards, find_hook_hazards
from lightning_xai.attribution.label_free import LabelFreeOutput
from lightning_xai.attribution.methods import (
    MethodLike,
    MethodSpec,
    get_submodule,
    method_spec,
    rebind_forward,
    resolve_method,
)
from lightning_xai.attribution.result import AttributionResult
from lightning_xai.utilities.gradients import grad_enabled
from lightning_xai.utilities.validation import check_positive_int as _positive_int

TargetLike = Literal["pred", "label"] | int | Tensor
NoiseTunnelType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
NOISE_TUNNEL_TYPES: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")

# Arguments the Attributor sets itself; users give them through its own parameters.
_RESERVED = {
    "inputs": "the inputs of `attribute()`",
    "target": "`target=`",
    "baselines": "`baseline=`",
    "additional_forward_args": "the model's forward (label-free references are added for you)",
    "internal_batch_size": "`internal_batch_size=`",
    "return_convergence_delta": "the result's `completeness_gap`",
}
_CAPTUM_CHATTER = (
    ".*did not already require gradients.*",
    ".*Setting forward, backward hooks and attributes on non-linear.*",
    ".*You are providing multiple inputs for Lime.*",
    ".*Setting backward hooks on ReLU activations.*",
)


class _ModuleFunction(nn.Module):
    """A function (e.g. a bound ``encode`` method) as a module that holds ``root``'s layers."""

    def __init__(self, fn: Callable[..., Any], root: nn.Module) -> None:
        super().__init__()
        self.root = root
        self._fn = fn

    def forward(self, *args: Any) -> Any:
        return self._fn(*args)


class AttributionWarning(UserWarning):
    """Attributions that are likely wrong (incomplete, or a model hook-based methods misread)."""


class Attributor:
    """Compute attributions of a model with any captum method, from its name, class or instance.

    Args:
        model: the module to explain (its ``forward``, or ``forward_fn``). Layer paths are looked
            up in it.
        method: a method name (``"integrated_gradients"``, ``"saliency"``, ``"deeplift"``,
            ``"occlusion"``, ``"layer_grad_cam"``, ... see
            :data:`~lightning_xai.attribution.METHODS`), a captum class, or a configured captum
            instance (used as configured; a ``NoiseTunnel`` instance turns on ``noise_tunnel``).
        layer: for layer methods, the layer's module path in ``model`` (``"features.2"``) or the
            module itself.
        baseline: ``"zeros"``, ``"mean"`` (of the training inputs, see :meth:`fit_baseline`),
            ``"blur"``, a number, or a tensor (one input, one per input, or for GradientShap and
            DeepLiftShap a set of references). Ignored by methods without baselines.
        target: which output to explain: ``"pred"`` (the predicted class), ``"label"`` (the
            labels passed to :meth:`attribute`), a class index, or a tensor of indices. Must be
            left ``None`` (meaning ``"pred"``) in label-free mode.
        label_free: explain the representation returned by the model (a tensor or a tuple of
            tensors of any shape) through :math:`\\langle f(x), f(x_0) \\rangle`, see
            :class:`~lightning_xai.attribution.LabelFreeOutput`.
        noise_tunnel: wrap the method in captum's ``NoiseTunnel``: ``"smoothgrad"``,
            ``"smoothgrad_sq"`` or ``"vargrad"``.
        nt_samples: noisy copies per example for ``noise_tunnel``.
        nt_stdevs: standard deviation of the noise (in input units) for ``noise_tunnel``.
        internal_batch_size: passed to methods that accept it (integrated gradients, layer
            integrated gradients, conductance, internal influence) to bound memory.
        method_kwargs: further arguments for the method's ``attribute`` (``n_steps``,
            ``sliding_window_shapes``, ``n_samples``, ...).
        init_kwargs: further constructor arguments (``multiply_by_inputs=False``, ...).
        blur_sigma: Gaussian sigma in pixels for ``baseline="blur"`` (default: a quarter of the
            smaller spatial side).
        completeness_threshold: warn when the relative completeness gap of a batch exceeds this
            (methods with an exact completeness property only); ``None`` never warns. Numerical
            integration stays well below 10% on trained models; an untrained model, whose
            outputs barely change between baseline and input, can come close to it.
        forward_fn: the function explained instead of ``model.forward``, e.g. ``model.encode``.
        check_hooks: for hook-based methods, run one forward pass to find functional or reused
            activations and warn (or, for DeepLift, raise) before the attribution runs.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> result = Attributor(net, "integrated_gradients").attribute(torch.rand(5, 1, 2, 2))
        >>> result.attributions.shape, result.targets.shape
        (torch.Size([5, 1, 2, 2]), torch.Size([5]))
        >>> result.relative_completeness_gap < 0.05
        True
    """

    def __init__(
        self,
        model: nn.Module,
        method: MethodLike = "integrated_gradients",
        *,
        layer: str | nn.Module | None = None,
        baseline: BaselineLike = "zeros",
        target: TargetLike | None = None,
        label_free: bool = False,
        noise_tunnel: NoiseTunnelType | None = None,
        nt_samples: int = 8,
        nt_stdevs: float = 0.1,
        internal_batch_size: int | None = None,
        method_kwargs: Mapping[str, Any] | None = None,
        init_kwargs: Mapping[str, Any] | None = None,
        blur_sigma: float | None = None,
        completeness_threshold: float | None = 0.1,
        forward_fn: Callable[..., Any] | None = None,
        check_hooks: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"`model` must be an nn.Module, got {type(model).__name__}; wrap a function with "
                "`forward_fn=` and pass the module holding its parameters as `model`."
            )
        if isinstance(method, NoiseTunnel):
            noise_tunnel = noise_tunnel or "smoothgrad"
            method = method.attribution_method
        self.spec = check_arguments(
            method,
            layer=layer,
            baseline=baseline,
            target=target,
            label_free=label_free,
            noise_tunnel=noise_tunnel,
            nt_samples=nt_samples,
            nt_stdevs=nt_stdevs,
            internal_batch_size=internal_batch_size,
            method_kwargs=method_kwargs,
            completeness_threshold=completeness_threshold,
        )
        method_kwargs = dict(method_kwargs or {})
        if isinstance(layer, str):
            get_submodule(model, layer)  # fail early with the available paths

        self.model = model
        self.method = method
        self.layer = layer
        self.baseline = baseline
        self.target = target
        self.label_free = label_free
        self.noise_tunnel = noise_tunnel
        self.nt_samples = nt_samples
        self.nt_stdevs = float(nt_stdevs)
        self.internal_batch_size = internal_batch_size
        self.method_kwargs = method_kwargs
        self.blur_sigma = blur_sigma
        self.completeness_threshold = completeness_threshold
        self.check_hooks = check_hooks
        self.mean_baseline: Tensor | None = None
        fn = forward_fn if forward_fn is not None else model
        self.forward_func: nn.Module
        if label_free:
            self.forward_func = LabelFreeOutput(fn, root=model)
        elif isinstance(fn, nn.Module):
            self.forward_func = fn
        else:
            self.forward_func = _ModuleFunction(fn, model)
        if isinstance(method, Attribution):
            if self.forward_func is not model:
                rebind_forward(method, self.forward_func)
            self.attribution = method
        else:
            self.attribution = resolve_method(
                method, self.forward_func, layer=layer, model=model, **dict(init_kwargs or {})
            )
        self._hazards: HookHazards | None = None
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ public API
    @property
    def name(self) -> str:
        """The method's name, with the noise tunnel when one is used."""
        return f"{self.noise_tunnel}({self.spec.name})" if self.noise_tunnel else self.spec.name

    @property
    def has_completeness(self) -> bool:
        """Whether attributions should add up to ``f(x) - f(baseline)``."""
        return self.spec.completeness != "none" and self.noise_tunnel is None

    def fit_baseline(
        self, data: Tensor | Iterable[object], max_samples: int | None = None
    ) -> Attributor:
        """Store the mean training input for ``baseline="mean"``.

        Args:
            data: training inputs ``(N, ...)`` or an iterable of batches (e.g. a dataloader).
            max_samples: read at most this many inputs.

        Returns:
            ``self``.
        """
        self.mean_baseline = mean_input(data, max_samples=max_samples)
        return self

    def attribute(self, inputs: Tensor, labels: Tensor | None = None) -> AttributionResult:
        """Attribute the chosen output of ``model`` to ``inputs``.

        Works inside ``torch.no_grad`` and ``torch.inference_mode`` too.

        Args:
            inputs: a batch ``(N, ...)``.
            labels: class labels ``(N,)``, required for ``target="label"``.

        Returns:
            An :class:`~lightning_xai.attribution.AttributionResult`.
        """
        if not isinstance(inputs, Tensor) or inputs.dim() < 2:
            raise ValueError(
                "`inputs` must be a batch tensor (N, ...) with at least 2 dimensions, got "
                f"{getattr(inputs, 'shape', type(inputs).__name__)}; add a batch dimension with "
                "`x.unsqueeze(0)`."
            )
        with grad_enabled(inputs, labels) as (inputs, labels):
            x = inputs.detach()
            baselines = self._baselines(x)
            extra = baselines if self.has_completeness else None
            refs, outputs, extra_outputs = self._evaluate(x, extra)
            target = self._resolve_target(outputs, labels, len(x))
            self._check_hazards(x, refs)
            attributions = self._explain(x, target, baselines, refs)
            delta = None
            if self.has_completeness:
                delta = _select(outputs, target) - self._baseline_outputs(
                    len(x), target, extra_outputs, refs
                ).to(outputs.device)
        result = AttributionResult(
            attributions=attributions.detach(),
            inputs=x,
            targets=target,
            method=self.name,
            layer=self.layer if isinstance(self.layer, str) else None,
            output_delta=None if delta is None else delta.detach(),
        )
        self._warn_if_incomplete(result)
        return result

    def infidelity(
        self, result: AttributionResult, n_perturb_samples: int = 8, noise_scale: float = 0.1
    ) -> Tensor:
        """captum's infidelity of input-shaped attributions (lower is better), per example.

        Perturbations are Gaussian noise with standard deviation ``noise_scale``.
        """
        from captum.metrics import infidelity

        self._require_input_shaped(result, "infidelity")

        def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
            noise = torch.randn_like(inputs) * noise_scale
            return noise, inputs - noise

        with grad_enabled(result.inputs, result.targets) as (x, target):
            refs = self._references(x)
            with warnings.catch_warnings():
                _silence_captum()
                return infidelity(
                    self.forward_func,
                    perturb,
                    x,
                    result.attributions.to(x.device),
                    additional_forward_args=refs or None,
                    target=target,
                    n_perturb_samples=n_perturb_samples,
                    normalize=True,
                ).detach()

    def sensitivity(
        self, result: AttributionResult, n_perturb_samples: int = 4, perturb_radius: float = 0.02
    ) -> Tensor:
        """captum's max-sensitivity of the attributions (lower is better), per example.

        The explained targets stay fixed; label-free references follow the perturbed inputs.
        """
        from captum.metrics import sensitivity_max

        self._require_input_shaped(result, "sensitivity")

        def explain(inputs: tuple[Tensor], target: Tensor | None = None) -> tuple[Tensor]:
            # captum passes and expects tuples, and calls this under no_grad
            with grad_enabled(inputs[0]) as (x,):
                refs = self._references(x)
                return (self._explain(x, target, self._baselines(x), refs),)

        with grad_enabled(result.inputs, result.targets) as (x, target):
            kwargs = {} if target is None else {"target": target}
            return sensitivity_max(
                explain,
                x,
                perturb_radius=perturb_radius,
                n_perturb_samples=n_perturb_samples,
                **kwargs,
            ).detach()

    # ------------------------------------------------------------------ internals
    def _references(self, x: Tensor) -> tuple[Tensor, ...]:
        if isinstance(self.forward_func, LabelFreeOutput):
            return self.forward_func.references(x)
        return ()

    def _resolve_target(self, outputs: Tensor, labels: Tensor | None, n: int) -> Tensor | None:
        if self.label_free:
            return None
        if outputs.dim() != 2:
            if outputs.dim() == 1 and self.target is None:
                return None
            raise ValueError(
                f"The model output has shape {tuple(outputs.shape)}; attribution needs one "
                "output per example (N,) or class scores (N, C). Explain a representation with "
                "label_free=True."
            )
        num_classes = outputs.shape[1]
        target = "pred" if self.target is None else self.target
        if isinstance(target, str):
            if target == "pred":
                return outputs.argmax(dim=1)
            if labels is None:
                raise ValueError(
                    "`target='label'` needs the labels: call attribute(inputs, labels), or use "
                    "target='pred'."
                )
            target = labels
        if isinstance(target, int):
            target = torch.full((n,), target, dtype=torch.long, device=outputs.device)
        target = torch.as_tensor(target, device=outputs.device)
        if target.dim() == 0:
            target = target.expand(n)
        if target.shape != (n,) or target.is_floating_point():
            raise ValueError(
                f"`target` must give one class index per example, shape ({n},), got a tensor of "
                f"shape {tuple(target.shape)} and dtype {target.dtype}."
            )
        target = target.long()
        if bool((target < 0).any()) or bool((target >= num_classes).any()):
            raise ValueError(
                f"`target` holds class indices {sorted(set(target.tolist()))} but the model has "
                f"{num_classes} outputs; use indices in [0, {num_classes - 1}]."
            )
        return target

    def _baselines(self, x: Tensor) -> Tensor | None:
        if self.spec.baselines not in ("single", "distribution"):
            return None
        baselines = make_baseline(
            self.baseline,
            x,
            mean=self.mean_baseline,
            blur_sigma=self.blur_sigma,
            distribution=self.spec.baselines == "distribution",
        )
        if len(baselines) == 1 and issubclass(self.spec.cls, DeepLiftShap | LayerDeepLiftShap):
            baselines = baselines.expand(2, *baselines.shape[1:])  # captum needs two or more
        return baselines

    def _attribute_kwargs(
        self, x: Tensor, target: Tensor | None, baselines: Tensor | None, refs: tuple[Tensor, ...]
    ) -> dict[str, Any]:
        accepts = self.spec.accepts
        kwargs: dict[str, Any] = {}
        if "target" in accepts and target is not None:
            kwargs["target"] = target
        if baselines is not None:
            kwargs["baselines"] = baselines
        if refs:
            kwargs["additional_forward_args"] = refs
        if self.internal_batch_size is not None:
            kwargs["internal_batch_size"] = self.internal_batch_size
        if "show_progress" in accepts:
            kwargs["show_progress"] = False
        if "sliding_window_shapes" in accepts and "sliding_window_shapes" not in self.method_kwargs:
            window, strides = _default_window(x)
            kwargs["sliding_window_shapes"] = window
            kwargs.setdefault("strides", strides)
        kwargs.update(self.method_kwargs)
        return kwargs

    def _explain(
        self, x: Tensor, target: Tensor | None, baselines: Tensor | None, refs: tuple[Tensor, ...]
    ) -> Tensor:
        kwargs = self._attribute_kwargs(x, target, baselines, refs)
        inputs = x.detach().clone().requires_grad_(True)
        method: Attribution = self.attribution
        if self.noise_tunnel is not None:
            method = NoiseTunnel(self.attribution)
            kwargs.update(
                nt_type=self.noise_tunnel, nt_samples=self.nt_samples, stdevs=self.nt_stdevs
            )
        with warnings.catch_warnings():
            _silence_captum()
            try:
                out = method.attribute(inputs, **kwargs)
            except TypeError as err:
                if "no rule defined" in str(err):
                    raise TypeError(
                        f"`method={self.spec.name!r}` has no LRP rule for a layer of "
                        f"{type(self.model).__name__}: {err} Set `module.rule` on that layer "
                        "(captum.attr._utils.lrp_rules) or choose another method."
                    ) from err
                raise
            except RuntimeError as err:
                if "used more than once" in str(err) or "does not contain some of the input" in str(
                    err
                ):
                    raise RuntimeError(
                        f"`method={self.spec.name!r}` failed because an activation module is used "
                        f"more than once in the forward pass. {FIX_HINT}"
                    ) from err
                raise
        if isinstance(out, tuple):  # layer methods on layers with several outputs
            out = out[0]
        return out

    def _evaluate(self, x: Tensor, extra: Tensor | None) -> tuple[tuple[Tensor, ...], Tensor, Any]:
        """No-grad outputs for ``x`` and the baselines ``extra``, in one pass in eval mode.

        Returns the label-free references (empty when supervised), the explained outputs for
        ``x`` (``<f(x), f(x)>`` in label-free mode) and the raw outputs (latent leaves in
        label-free mode) of ``extra``.
        """
        n = len(x)
        merged = extra is not None and not self.model.training  # no batch statistics to mix
        with torch.no_grad():
            out = self._raw_outputs(torch.cat([x, extra]) if merged else x)
            rest = None
            if merged:
                out, rest = _rows(out, slice(0, n)), _rows(out, slice(n, None))
            elif extra is not None:
                rest = self._raw_outputs(extra)
        if isinstance(self.forward_func, LabelFreeOutput):
            return out, sum(r.reshape(n, -1).square().sum(1) for r in out), rest
        return (), out, rest

    def _raw_outputs(self, batch: Tensor) -> Any:
        if isinstance(self.forward_func, LabelFreeOutput):
            return tuple(t.detach() for t in self.forward_func.encode(batch))
        return self.forward_func(batch)

    def _baseline_outputs(
        self, n: int, target: Tensor | None, extra_outputs: Any, refs: tuple[Tensor, ...]
    ) -> Tensor:
        """``f(baseline)`` per example from the outputs of the distinct baselines: paired with
        their example when there is one baseline per example, else averaged over them."""
        if extra_outputs is None:
            return torch.zeros(n)
        if isinstance(self.forward_func, LabelFreeOutput):
            k = len(extra_outputs[0])
            scores = sum(
                r.reshape(n, -1) @ b.reshape(k, -1).T for r, b in zip(refs, extra_outputs)
            )  # (n, k): <f(b_k), f(x_n)>
        else:
            k = len(extra_outputs)
            if target is None:
                scores = extra_outputs.reshape(1, k).expand(n, k)
            else:
                scores = extra_outputs[:, target].T  # (n, k): f(b_k) at example n's target
        if self.spec.baselines == "single" and k == n:
            return scores.diagonal()
        return scores.mean(dim=1)

    def _check_hazards(self, x: Tensor, refs: tuple[Tensor, ...]) -> None:
        if not (self.check_hooks and self.spec.hook_based) or self._hazards is not None:
            return
        deeplift = issubclass(self.spec.cls, DeepLift | LayerDeepLift)
        self._hazards = find_hook_hazards(
            self.model,
            (x[:1], *(r[:1] for r in refs)),
            forward=self.forward_func,
            relu_only=not deeplift,
        )
        if self._hazards.reused and deeplift:
            raise ValueError(
                f"`method={self.spec.name!r}` cannot explain {type(self.model).__name__}: "
                f"{self._hazards.describe()}. {FIX_HINT}"
            )
        if self._hazards.functional:
            self._warn_once(
                "hooks",
                f"`method={self.spec.name!r}` only sees activation modules, but "
                f"{type(self.model).__name__} has {self._hazards.describe()}; its attributions "
                f"are silently wrong. {FIX_HINT}",
            )

    def _warn_if_incomplete(self, result: AttributionResult) -> None:
        if self.completeness_threshold is None or self.spec.completeness != "exact":
            return
        gap = result.relative_completeness_gap
        if gap is None or not gap > self.completeness_threshold:
            return
        if self.spec.hook_based and not self._hazards and _has_maxpool(self.model):
            fix = (
                "The model has no functional or reused activations, but captum's DeepLift rule "
                "for max-pooling is inexact (captum issue #1276); compare with "
                "method='integrated_gradients' or use average pooling."
            )
        elif self.spec.hook_based:
            fix = FIX_HINT
        elif "n_steps" in self.spec.accepts:
            fix = "Increase `n_steps` in method_kwargs (e.g. {'n_steps': 200})."
        else:
            fix = "Increase the number of samples of the method."
        self._warn_once(
            "completeness",
            f"`method={self.spec.name!r}`: the attributions miss f(x) - f(baseline) by "
            f"{gap:.1%} (relative completeness gap above completeness_threshold="
            f"{self.completeness_threshold}). {fix}",
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, AttributionWarning, stacklevel=3)

    def _require_input_shaped(self, result: AttributionResult, what: str) -> None:
        if self.spec.needs_layer or result.attributions.shape != result.inputs.shape:
            raise ValueError(
                f"{what} needs attributions shaped like the inputs; `method={self.spec.name!r}` "
                f"gives {tuple(result.attributions.shape)} for inputs "
                f"{tuple(result.inputs.shape)}. Use an input attribution method."
            )


def check_arguments(
    method: MethodLike,
    *,
    layer: str | nn.Module | None = None,
    baseline: BaselineLike = "zeros",
    target: TargetLike | None = None,
    label_free: bool = False,
    noise_tunnel: NoiseTunnelType | None = None,
    nt_samples: int = 8,
    nt_stdevs: float = 0.1,
    internal_batch_size: int | None = None,
    method_kwargs: Mapping[str, Any] | None = None,
    completeness_threshold: float | None = 0.1,
) -> MethodSpec:
    """Validate :class:`Attributor` arguments that do not need the model; return the method spec.

    Callbacks call it in ``__init__`` so that configuration errors surface before training.

    Raises:
        ValueError: naming the argument, the value and the fix.
        TypeError: for arguments of the wrong type.

    Example:
        >>> check_arguments("integrated_gradients", method_kwargs={"n_steps": 16}).name
        'integrated_gradients'
        >>> check_arguments("saliency", internal_batch_size=8)
        Traceback (most recent call last):
        ...
        ValueError: `internal_batch_size=8` is not accepted by `method='saliency'`. Only integrated gradients, layer integrated gradients, layer conductance and internal influence take it; for perturbation methods use method_kwargs={'perturbations_per_eval': k}, or drop internal_batch_size.
    """
    if isinstance(method, NoiseTunnel):
        method = method.attribution_method
    spec = method_spec(method)
    if spec.needs_layer and layer is None and not isinstance(method, Attribution):
        raise ValueError(
            f"`method={spec.name!r}` is a layer method and needs `layer`, the module path of the "
            "layer to explain, e.g. layer='features.2'."
        )
    if layer is not None and not spec.needs_layer:
        raise ValueError(
            f"`layer={layer!r}` was given but `method={spec.name!r}` is not a layer method. Drop "
            "`layer` or choose a layer method such as 'layer_grad_cam'."
        )
    validate_baseline(baseline)
    _validate_target(target, label_free)
    if noise_tunnel is not None and noise_tunnel not in NOISE_TUNNEL_TYPES:
        raise ValueError(
            f"`noise_tunnel={noise_tunnel!r}` is not supported; use one of "
            f"{NOISE_TUNNEL_TYPES} or None."
        )
    _positive_int("nt_samples", nt_samples)
    if not (isinstance(nt_stdevs, int | float) and nt_stdevs >= 0 and math.isfinite(nt_stdevs)):
        raise ValueError(f"`nt_stdevs` must be a finite number >= 0, got {nt_stdevs!r}.")
    accepts = spec.accepts
    open_kwargs = "kwargs" in accepts
    if internal_batch_size is not None:
        _positive_int("internal_batch_size", internal_batch_size)
        if "internal_batch_size" not in accepts:
            raise ValueError(
                f"`internal_batch_size={internal_batch_size}` is not accepted by "
                f"`method={spec.name!r}`. Only integrated gradients, layer integrated "
                "gradients, layer conductance and internal influence take it; for "
                "perturbation methods use method_kwargs={'perturbations_per_eval': k}, or "
                "drop internal_batch_size."
            )
    if method_kwargs is not None and not isinstance(method_kwargs, Mapping):
        raise TypeError(
            f"`method_kwargs` must be a mapping of argument names to values, got "
            f"{type(method_kwargs).__name__}."
        )
    for key in method_kwargs or {}:
        if key in _RESERVED:
            raise ValueError(
                f"`method_kwargs` must not contain {key!r}: it is set through {_RESERVED[key]}."
            )
        if key not in accepts and not open_kwargs:
            raise ValueError(
                f"`method_kwargs` key {key!r} is not an argument of "
                f"{spec.cls.__name__}.attribute; allowed: "
                f"{sorted(accepts - set(_RESERVED))}."
            )
    if completeness_threshold is not None and not completeness_threshold > 0:
        raise ValueError(
            f"`completeness_threshold` must be positive or None, got {completeness_threshold!r}."
        )
    return spec


def _select(outputs: Tensor, target: Tensor | None) -> Tensor:
    if target is None:
        return outputs.reshape(len(outputs))
    return outputs.gather(1, target.reshape(-1, 1).to(outputs.device)).squeeze(1)


def _rows(out: Any, rows: slice) -> Any:
    return tuple(t[rows] for t in out) if isinstance(out, tuple) else out[rows]


def _has_maxpool(model: nn.Module) -> bool:
    return any(isinstance(m, nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d) for m in model.modules())


def _silence_captum() -> None:
    for pattern in _CAPTUM_CHATTER:
        warnings.filterwarnings("ignore", message=pattern)


def _default_window(x: Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Occlusion patches: a quarter of each spatial side, stride half the patch."""
    shape = tuple(x.shape[1:])
    if len(shape) == 1:
        return (1,), (1,)
    sides = tuple(max(1, s // 4) for s in shape[1:])
    strides = tuple(max(1, s // 2) for s in sides)
    return (shape[0], *sides), (shape[0], *strides)


def _validate_target(target: object, label_free: bool) -> None:
    if label_free:
        if target is not None:
            raise ValueError(
                f"`target={target!r}` cannot be used with label_free=True: label-free attribution "
                "explains the whole representation. Leave target=None."
            )
        return
    if target is None or target in ("pred", "label"):
        return
    if isinstance(target, str):
        raise ValueError(
            f"`target={target!r}` is not supported; use 'pred', 'label', a class index or a "
            "tensor of class indices."
        )
    if isinstance(target, bool) or not isinstance(target, int | Tensor):
        raise TypeError(
            f"`target` must be 'pred', 'label', an int or a tensor, got {type(target).__name__}."
        )
    if isinstance(target, int) and target < 0:
        raise ValueError(f"`target={target}` must be a class index >= 0.")
    if isinstance(target, Tensor) and target.is_floating_point():
        raise ValueError("`target` must hold integer class indices, got a floating-point tensor.")
