"""One validated, model-free description of an attribution: :class:`AttributionConfig`.

:class:`~lightning_xai.attribution.Attributor`, the
:class:`~lightning_xai.callbacks.AttributionLogger` and every other callback that attributes
build from it, so the argument list and its checks live in one place.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from captum.attr import Attribution, NoiseTunnel
from torch import Tensor, nn

from lightning_xai.attribution.baselines import BaselineLike, validate_baseline
from lightning_xai.attribution.methods import METHODS, MethodLike, MethodSpec, method_spec
from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "NOISE_TUNNEL_TYPES",
    "TOKEN_LAYER_TWINS",
    "AttributionConfig",
    "NoiseTunnelType",
    "TargetLike",
]

TargetLike = Literal["pred", "label"] | int | Tensor
NoiseTunnelType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
NOISE_TUNNEL_TYPES: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")

#: Input gradient methods and the layer method that explains integer token ids through an
#: embedding layer given as ``layer=`` (captum interpolates or differentiates in the layer's
#: space, which integer ids cannot do themselves).
TOKEN_LAYER_TWINS: dict[str, str] = {
    "integrated_gradients": "layer_integrated_gradients",
    "saliency": "layer_gradient_x_activation",
    "input_x_gradient": "layer_gradient_x_activation",
    "deeplift": "layer_deeplift",
    "deeplift_shap": "layer_deeplift_shap",
}

# Arguments the Attributor sets itself; users give them through its own parameters.
_RESERVED = {
    "inputs": "the inputs of `attribute()`",
    "target": "`target=`",
    "baselines": "`baseline=`",
    "additional_forward_args": "the BatchAdapter (batch entries the forward needs besides the "
    "explained inputs; label-free references are added for you)",
    "internal_batch_size": "`internal_batch_size=`",
    "return_convergence_delta": "the result's `completeness_gap`",
}
# method_kwargs captum checks with bare asserts: (name, smallest allowed value)
_POSITIVE_KWARGS = ("n_steps", "n_samples", "perturbations_per_eval")


@dataclass
class AttributionConfig:
    """What to attribute and how, validated once, without a model.

    Args:
        method: a method name (``"integrated_gradients"``, ``"saliency"``, ``"deeplift"``,
            ``"occlusion"``, ``"layer_grad_cam"``, ... see
            :data:`~lightning_xai.attribution.METHODS`), a captum class, or a configured captum
            instance (a ``NoiseTunnel`` instance turns on ``noise_tunnel``).
        layer: for layer methods, the layer's module path (``"features.2"``) or the module. For
            input gradient methods on integer token ids, the embedding layer the ids go through
            (``"bert.embeddings.word_embeddings"``): the method's layer twin in
            :data:`TOKEN_LAYER_TWINS` explains the embeddings, summed per token.
        baseline: ``"zeros"``, ``"mean"`` (of the training inputs), ``"blur"``, a number, or a
            tensor (one input, one per example, or a set of references for distribution
            methods); for several inputs a tuple with one entry per input. For token ids, the
            reference token id (``"zeros"``: id 0, the usual padding id).
        target: ``"pred"`` (the predicted class), ``"label"`` (the batch's labels), a class
            index, or a tensor of indices; ``None`` means ``"pred"``. Must be ``None`` or
            ``"pred"`` in label-free mode.
        label_free: explain the representation the model returns through
            :math:`\\langle f(x), f(x_0) \\rangle`, see
            :class:`~lightning_xai.attribution.LabelFreeOutput`.
        noise_tunnel: wrap the method in captum's ``NoiseTunnel``: ``"smoothgrad"``,
            ``"smoothgrad_sq"`` or ``"vargrad"``.
        nt_samples: noisy copies per example for ``noise_tunnel``.
        nt_stdevs: standard deviation of the noise (in input units) for ``noise_tunnel``.
        internal_batch_size: passed to methods that accept it, to bound memory.
        method_kwargs: further arguments of the method's ``attribute`` (``n_steps``,
            ``sliding_window_shapes``, ...).
        init_kwargs: further constructor arguments (``multiply_by_inputs=False``, ...).
        blur_sigma: Gaussian sigma in pixels for ``baseline="blur"`` (default: a quarter of the
            smaller spatial side).
        completeness_threshold: warn when the relative completeness gap of a batch exceeds it
            (methods with an exact completeness property only); ``None`` never warns.
        check_hooks: for hook-based methods, run one forward pass first to find functional or
            reused activations; warn (DeepLift: raise) before attributing.

    Raises:
        ValueError: naming the argument, the value and the fix.
        TypeError: for arguments of the wrong type.

    Example:
        >>> config = AttributionConfig("integrated_gradients", method_kwargs={"n_steps": 16})
        >>> config.spec.name, config.method_kwargs
        ('integrated_gradients', {'n_steps': 16})
        >>> AttributionConfig("saliency", internal_batch_size=8)
        Traceback (most recent call last):
        ...
        ValueError: `internal_batch_size=8` is not accepted by `method='saliency'`. Only integrated gradients, layer integrated gradients, layer conductance and internal influence take it; for perturbation methods use method_kwargs={'perturbations_per_eval': k}, or drop internal_batch_size.
        >>> config.replace(method="saliency", method_kwargs=None).spec.name
        'saliency'
    """

    method: MethodLike = "integrated_gradients"
    layer: str | nn.Module | None = None
    baseline: BaselineLike | tuple[BaselineLike, ...] = "zeros"
    target: TargetLike | None = None
    label_free: bool = False
    noise_tunnel: NoiseTunnelType | None = None
    nt_samples: int = 8
    nt_stdevs: float = 0.1
    internal_batch_size: int | None = None
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    blur_sigma: float | None = None
    completeness_threshold: float | None = 0.1
    check_hooks: bool = True
    spec: MethodSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.method, NoiseTunnel):
            self.noise_tunnel = self.noise_tunnel or "smoothgrad"
            self.method = self.method.attribution_method
        self.method_kwargs = _mapping("method_kwargs", self.method_kwargs)
        self.init_kwargs = _mapping("init_kwargs", self.init_kwargs)
        if self.label_free and isinstance(self.target, str) and self.target == "pred":
            self.target = None
        self.spec = _validate(self)

    @property
    def token_twin(self) -> MethodSpec | None:
        """The layer method used for integer token ids, when ``method`` has one."""
        twin = TOKEN_LAYER_TWINS.get(self.spec.name)
        return METHODS[twin] if twin is not None else None

    def replace(self, **changes: Any) -> AttributionConfig:
        """A copy with ``changes`` applied, validated again."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names accepted by the constructor (and as ``Attributor`` keyword arguments)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"`{name}` must be a mapping of argument names to values, got "
            f"{type(value).__name__} ({value!r}); e.g. {name}={{'n_steps': 16}}."
        )
    return dict(value)


def _validate(config: AttributionConfig) -> MethodSpec:
    method = config.method
    spec = method_spec(method)
    layer = config.layer
    if spec.needs_layer and layer is None and not isinstance(method, Attribution):
        raise ValueError(
            f"`method={spec.name!r}` is a layer method and needs `layer`, the module path of the "
            "layer to explain, e.g. layer='features.2'."
        )
    if layer is not None and not spec.needs_layer and spec.name not in TOKEN_LAYER_TWINS:
        raise ValueError(
            f"`layer={layer!r}` was given but `method={spec.name!r}` is not a layer method. Drop "
            "`layer` or choose a layer method such as 'layer_grad_cam'."
        )
    if layer is not None and not isinstance(layer, str | nn.Module):
        raise TypeError(
            f"`layer` must be a module path such as 'features.2' or a module, got {layer!r}."
        )
    baselines = config.baseline if isinstance(config.baseline, tuple) else (config.baseline,)
    if not baselines:
        raise ValueError("`baseline=()` is empty; give one baseline per explained input.")
    for baseline in baselines:
        validate_baseline(baseline)
    if config.blur_sigma is not None and not (
        isinstance(config.blur_sigma, int | float)
        and not isinstance(config.blur_sigma, bool)
        and math.isfinite(config.blur_sigma)
        and config.blur_sigma > 0
    ):
        raise ValueError(
            f"`blur_sigma` must be a positive number of pixels or None, got {config.blur_sigma!r}."
        )
    _validate_target(config.target, config.label_free)
    if config.noise_tunnel is not None and config.noise_tunnel not in NOISE_TUNNEL_TYPES:
        raise ValueError(
            f"`noise_tunnel={config.noise_tunnel!r}` is not supported; use one of "
            f"{NOISE_TUNNEL_TYPES} or None."
        )
    check_positive_int("nt_samples", config.nt_samples)
    nt_stdevs = config.nt_stdevs
    if not (
        isinstance(nt_stdevs, int | float)
        and not isinstance(nt_stdevs, bool)
        and nt_stdevs >= 0
        and math.isfinite(nt_stdevs)
    ):
        raise ValueError(f"`nt_stdevs` must be a finite number >= 0, got {nt_stdevs!r}.")
    accepts = spec.accepts
    if config.internal_batch_size is not None:
        check_positive_int("internal_batch_size", config.internal_batch_size)
        if "internal_batch_size" not in accepts:
            raise ValueError(
                f"`internal_batch_size={config.internal_batch_size}` is not accepted by "
                f"`method={spec.name!r}`. Only integrated gradients, layer integrated "
                "gradients, layer conductance and internal influence take it; for "
                "perturbation methods use method_kwargs={'perturbations_per_eval': k}, or "
                "drop internal_batch_size."
            )
    for key, value in config.method_kwargs.items():
        if key in _RESERVED:
            raise ValueError(
                f"`method_kwargs` must not contain {key!r}: it is set through {_RESERVED[key]}."
            )
        if key not in accepts and "kwargs" not in accepts:
            raise ValueError(
                f"`method_kwargs` key {key!r} is not an argument of "
                f"{spec.cls.__name__}.attribute; allowed: "
                f"{sorted(accepts - set(_RESERVED))}."
            )
        if key in _POSITIVE_KWARGS and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(
                f"`method_kwargs={{{key!r}: {value!r}}}`: {key} must be a positive integer; "
                f"use e.g. method_kwargs={{{key!r}: {16 if key == 'n_steps' else 8}}}."
            )
    threshold = config.completeness_threshold
    if threshold is not None and not (
        isinstance(threshold, int | float) and not isinstance(threshold, bool) and threshold > 0
    ):
        raise ValueError(f"`completeness_threshold` must be positive or None, got {threshold!r}.")
    if not isinstance(config.check_hooks, bool):
        raise TypeError(f"`check_hooks` must be True or False, got {config.check_hooks!r}.")
    if not isinstance(config.label_free, bool):
        raise TypeError(f"`label_free` must be True or False, got {config.label_free!r}.")
    return spec


def _validate_target(target: object, label_free: bool) -> None:
    if label_free:
        if target is not None:
            raise ValueError(
                f"`target={target!r}` cannot be used with label_free=True: label-free attribution "
                "explains the whole representation. Leave target=None."
            )
        return
    if target is None or (isinstance(target, str) and target in ("pred", "label")):
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
