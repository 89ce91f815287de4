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
from lightning_xai.utilities.batches import resolve_callable
from lightning_xai.utilities.validation import check_finite, check_positive_int

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

    def to_dict(self, model: nn.Module | None = None) -> dict[str, Any]:
        """Every field as plain values, to store next to saved attributions and rebuild the
        same configuration with :meth:`from_dict`.

        The method is stored by name (a captum class that is not in
        :data:`~lightning_xai.attribution.METHODS` by its dotted import path; a configured
        instance by its class, so its constructor arguments are only kept through
        ``init_kwargs``); a layer given as a module by its path in ``model``. Tensors (a
        baseline, a target) stay tensors, so a dict saved with ``torch.save`` loads with
        ``weights_only=True``.

        Example:
            >>> d = AttributionConfig("integrated_gradients", method_kwargs={"n_steps": 16}).to_dict()
            >>> d["method"], d["method_kwargs"], d["baseline"]
            ('integrated_gradients', {'n_steps': 16}, 'zeros')
            >>> AttributionConfig.from_dict(d) == AttributionConfig.from_dict(d)
            True
        """
        out: dict[str, Any] = {}
        for name in self.field_names():
            out[name] = _plain(getattr(self, name))
        method = self.method
        if isinstance(method, str):
            out["method"] = self.spec.name
        else:
            cls = method if isinstance(method, type) else type(method)
            known = METHODS.get(self.spec.name)
            out["method"] = (
                self.spec.name
                if known is not None and known.cls is cls
                else f"{cls.__module__}.{cls.__qualname__}"
            )
        layer = self.layer
        if isinstance(layer, nn.Module):
            path = None
            if model is not None:
                path = next((n for n, m in model.named_modules() if m is layer), None)
            out["layer"] = path if path is not None else f"<{type(layer).__name__} module>"
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttributionConfig:
        """The configuration :meth:`to_dict` recorded (unknown keys are ignored, so a saved
        file's whole ``config`` entry can be passed).

        Raises:
            ValueError: for a recorded layer that was a module outside any model.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"`data` must be a mapping from to_dict(), got {type(data).__name__}.")
        values = {k: data[k] for k in cls.field_names() if k in data}
        method = values.get("method")
        if isinstance(method, str) and "." in method:
            values["method"] = resolve_callable(method)
        layer = values.get("layer")
        if isinstance(layer, str) and layer.startswith("<"):
            raise ValueError(
                f"The recorded `layer={layer!r}` was a module given without its model; pass "
                "the layer again (a module path such as 'features.2')."
            )
        return cls(**values)


def _plain(value: Any) -> Any:
    """``value`` with containers copied and callables or other objects turned into their
    dotted import path or ``repr`` (what ``torch.load(weights_only=True)`` can read)."""
    if value is None or isinstance(value, bool | int | float | str | Tensor):
        return value
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


def _check_numbers(name: str, value: Any) -> None:
    """Reject NaN and inf anywhere in ``value`` (numbers, tensors, nested containers)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}.")
    if isinstance(value, Tensor) and value.is_floating_point():
        if not bool(value.isfinite().all()):
            bad = int((~value.isfinite()).sum())
            raise ValueError(
                f"`{name}` is a tensor holding {bad} NaN or inf value(s) of {value.numel()}; "
                "give finite values."
            )
    if isinstance(value, tuple | list):
        for i, v in enumerate(value):
            _check_numbers(f"{name}[{i}]", v)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_numbers(f"{name}[{k!r}]", v)


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
    _check_numbers("baseline", config.baseline)
    check_finite("blur_sigma", config.blur_sigma, minimum=0.0, exclusive=True, allow_none=True)
    _validate_target(config.target, config.label_free)
    if config.noise_tunnel is not None and config.noise_tunnel not in NOISE_TUNNEL_TYPES:
        raise ValueError(
            f"`noise_tunnel={config.noise_tunnel!r}` is not supported; use one of "
            f"{NOISE_TUNNEL_TYPES} or None."
        )
    check_positive_int("nt_samples", config.nt_samples)
    check_finite("nt_stdevs", config.nt_stdevs, minimum=0.0)
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
    _check_numbers("method_kwargs", config.method_kwargs)
    _check_numbers("init_kwargs", config.init_kwargs)
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
    check_finite(
        "completeness_threshold",
        config.completeness_threshold,
        minimum=0.0,
        exclusive=True,
        allow_none=True,
    )
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
    if isinstance(target, Tensor) and target.numel() and bool((target < 0).any()):
        raise ValueError(
            f"`target` holds negative class indices {sorted(set(target[target < 0].tolist()))}; "
            "give class indices >= 0."
        )
