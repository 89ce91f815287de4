"""Resolve an attribution method given by name, captum class or configured captum instance."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from captum import attr as captum_attr
from captum.attr import Attribution
from torch import nn

BaselineKind = Literal["none", "single", "distribution", "layer"]
CompletenessKind = Literal["exact", "expected", "none"]


@dataclass(frozen=True)
class MethodSpec:
    """What the library knows about one captum attribution class.

    Attributes:
        name: snake_case name used in configs, e.g. ``"integrated_gradients"``.
        cls: the captum class.
        needs_layer: whether the class is constructed with a ``layer`` (a layer method).
        baselines: ``"none"`` (no baselines), ``"single"`` (one reference per example),
            ``"distribution"`` (a set of references drawn from, e.g. GradientShap) or ``"layer"``
            (baselines live in the layer's space; the library passes none).
        completeness: ``"exact"`` when ``sum(attributions) == f(x) - f(baseline)`` holds up to
            numerical error, ``"expected"`` when it holds only in expectation (sampling methods),
            ``"none"`` when the method makes no such promise.
        hook_based: whether the method overrides gradients with hooks on activation modules
            (DeepLift, GuidedBackprop, LRP, ...), so functional activations silently break it.
    """

    name: str
    cls: type[Attribution]
    needs_layer: bool = False
    baselines: BaselineKind = "none"
    completeness: CompletenessKind = "none"
    hook_based: bool = False

    @property
    def accepts(self) -> frozenset[str]:
        """Keyword arguments accepted by ``cls.attribute``."""
        return _attribute_params(self.cls)


def _spec(name: str, cls_name: str, **kwargs: Any) -> MethodSpec:
    return MethodSpec(name=name, cls=getattr(captum_attr, cls_name), **kwargs)


_SPECS: tuple[MethodSpec, ...] = (
    # gradient methods
    _spec("saliency", "Saliency"),
    _spec("input_x_gradient", "InputXGradient"),
    _spec("integrated_gradients", "IntegratedGradients", baselines="single", completeness="exact"),
    _spec("gradient_shap", "GradientShap", baselines="distribution", completeness="expected"),
    _spec("deeplift", "DeepLift", baselines="single", completeness="exact", hook_based=True),
    _spec(
        "deeplift_shap",
        "DeepLiftShap",
        baselines="distribution",
        completeness="exact",
        hook_based=True,
    ),
    _spec("guided_backprop", "GuidedBackprop", hook_based=True),
    _spec("deconvolution", "Deconvolution", hook_based=True),
    _spec("lrp", "LRP", hook_based=True),
    # perturbation methods
    _spec("occlusion", "Occlusion", baselines="single"),
    _spec("feature_ablation", "FeatureAblation", baselines="single"),
    _spec("feature_permutation", "FeaturePermutation"),
    _spec(
        "shapley_value_sampling",
        "ShapleyValueSampling",
        baselines="single",
        completeness="exact",
    ),
    _spec("lime", "Lime", baselines="single"),
    _spec("kernel_shap", "KernelShap", baselines="single"),
    # layer methods
    _spec("layer_grad_cam", "LayerGradCam", needs_layer=True),
    _spec("guided_grad_cam", "GuidedGradCam", needs_layer=True, hook_based=True),
    _spec(
        "layer_conductance",
        "LayerConductance",
        needs_layer=True,
        baselines="single",
        completeness="exact",
    ),
    _spec(
        "layer_integrated_gradients",
        "LayerIntegratedGradients",
        needs_layer=True,
        baselines="single",
        completeness="exact",
    ),
    _spec(
        "layer_gradient_shap",
        "LayerGradientShap",
        needs_layer=True,
        baselines="distribution",
        completeness="expected",
    ),
    _spec(
        "layer_deeplift",
        "LayerDeepLift",
        needs_layer=True,
        baselines="single",
        completeness="exact",
        hook_based=True,
    ),
    _spec(
        "layer_deeplift_shap",
        "LayerDeepLiftShap",
        needs_layer=True,
        baselines="distribution",
        completeness="exact",
        hook_based=True,
    ),
    _spec("layer_gradient_x_activation", "LayerGradientXActivation", needs_layer=True),
    _spec("layer_feature_ablation", "LayerFeatureAblation", needs_layer=True, baselines="layer"),
    _spec("layer_lrp", "LayerLRP", needs_layer=True, hook_based=True),
    _spec("internal_influence", "InternalInfluence", needs_layer=True, baselines="single"),
)

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}
"""Every method available by name, keyed by its snake_case name."""

_BY_CLASS: dict[type[Attribution], MethodSpec] = {spec.cls: spec for spec in _SPECS}

MethodLike = str | type[Attribution] | Attribution
"""A method given as a name in :data:`METHODS`, a captum class, or a configured captum instance."""


@functools.cache
def _attribute_params(cls: type[Attribution]) -> frozenset[str]:
    return frozenset(inspect.signature(cls.attribute).parameters) - {"self"}


def _unknown_method(value: object) -> ValueError:
    return ValueError(
        f"`method={value!r}` is not a known attribution method. Use one of "
        f"{sorted(METHODS)}, a captum attribution class or a configured captum instance."
    )


def method_spec(method: MethodLike) -> MethodSpec:
    """Return the :class:`MethodSpec` describing ``method``.

    Captum classes that the library does not list get a spec inferred from their signatures
    (a ``layer`` constructor argument makes a layer method, a ``baselines`` argument to
    ``attribute`` a single-baseline method).

    Args:
        method: a name in :data:`METHODS`, a captum attribution class or instance.

    Raises:
        ValueError: if the name is unknown.
        TypeError: if ``method`` is neither a string nor a captum attribution class/instance.

    Example:
        >>> spec = method_spec("integrated_gradients")
        >>> spec.cls.__name__, spec.baselines, spec.completeness
        ('IntegratedGradients', 'single', 'exact')
    """
    if isinstance(method, str):
        key = method.strip().lower().replace("-", "_")
        if key not in METHODS:
            raise _unknown_method(method)
        return METHODS[key]
    cls = type(method) if isinstance(method, Attribution) else method
    if not (isinstance(cls, type) and issubclass(cls, Attribution)):
        raise TypeError(
            f"`method` must be a method name, a captum attribution class or a captum attribution "
            f"instance, got {method!r} of type {type(method).__name__}. For example "
            "method='integrated_gradients' or method=captum.attr.IntegratedGradients."
        )
    if cls in _BY_CLASS:
        return _BY_CLASS[cls]
    for known, spec in _BY_CLASS.items():
        if issubclass(cls, known):
            return MethodSpec(
                name=_snake(cls.__name__),
                cls=cls,
                needs_layer=spec.needs_layer,
                baselines=spec.baselines,
                completeness=spec.completeness,
                hook_based=spec.hook_based,
            )
    init_params = inspect.signature(cls.__init__).parameters
    return MethodSpec(
        name=_snake(cls.__name__),
        cls=cls,
        needs_layer="layer" in init_params,
        baselines="single" if "baselines" in _attribute_params(cls) else "none",
    )


def _snake(name: str) -> str:
    out = [f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name)]
    return "".join(out)


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule of ``model`` at the dotted ``path`` (e.g. ``"features.2"``).

    A path may leave out the name of the one direct child that holds it, so ``"features.2"``
    also finds ``model.features.2`` inside a LightningModule that keeps its network in
    ``self.model``.

    Raises:
        ValueError: naming the path and the available module paths when it is not found or
            is ambiguous.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> get_submodule(net, "1")
        ReLU()
        >>> get_submodule(nn.ModuleDict({"model": net}), "1")
        ReLU()
    """
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"`layer` must be a non-empty module path such as 'features.2', got {path!r}."
        )
    try:
        return model.get_submodule(path)
    except AttributeError:
        pass
    found = []
    for child_name, child in model.named_children():
        try:
            found.append((f"{child_name}.{path}", child.get_submodule(path)))
        except AttributeError:
            continue
    if len(found) == 1:
        return found[0][1]
    available = [name for name, _ in model.named_modules() if name]
    if found:
        raise ValueError(
            f"`layer={path!r}` is ambiguous in {type(model).__name__}: it matches "
            f"{[name for name, _ in found]}. Give the full path."
        )
    shown = ", ".join(repr(a) for a in available[:40]) + (" ..." if len(available) > 40 else "")
    raise ValueError(
        f"`layer={path!r}` is not a module path of {type(model).__name__}. Use one of: {shown}."
    )


def resolve_method(
    method: MethodLike,
    forward_func: Callable[..., Any],
    layer: str | nn.Module | None = None,
    model: nn.Module | None = None,
    **init_kwargs: Any,
) -> Attribution:
    """Build a captum attribution object from a name, a class or a configured instance.

    Args:
        method: a name in :data:`METHODS` (``"integrated_gradients"``, ``"layer_grad_cam"``,
            ...), a captum attribution class, or a configured instance, which is returned as
            it is.
        forward_func: the function (usually an ``nn.Module``) to explain.
        layer: for layer methods, the layer as a module path in ``model`` (``"features.2"``) or
            a module.
        model: the module in which ``layer`` is looked up (``forward_func`` when it is a module).
        **init_kwargs: extra constructor arguments (e.g. ``multiply_by_inputs=False``).

    Raises:
        ValueError: unknown name, a layer method without ``layer``, or a layer path that is not
            in ``model``.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> type(resolve_method("saliency", net)).__name__
        'Saliency'
        >>> lm = resolve_method("layer_conductance", net, layer="1")
        >>> lm.layer
        ReLU()
    """
    spec = method_spec(method)
    if isinstance(method, Attribution):
        if init_kwargs:
            raise ValueError(
                f"Constructor arguments {sorted(init_kwargs)} cannot be applied to an already "
                f"configured {type(method).__name__} instance; pass the class or the name instead."
            )
        return method
    kwargs = dict(init_kwargs)
    if spec.needs_layer:
        if layer is None:
            raise ValueError(
                f"`method={spec.name!r}` is a layer method and needs `layer`, the module path of "
                "the layer to explain, e.g. layer='features.2'."
            )
        kwargs["layer"] = _resolve_layer(layer, model, forward_func)
    elif layer is not None:
        raise ValueError(
            f"`layer={layer!r}` was given but `method={spec.name!r}` is not a layer method. "
            f"Drop `layer` or choose a layer method such as 'layer_grad_cam'."
        )
    try:
        return spec.cls(forward_func, **kwargs)
    except TypeError as err:
        raise TypeError(f"Could not construct {spec.cls.__name__} with {kwargs}: {err}") from err


def _resolve_layer(
    layer: str | nn.Module, model: nn.Module | None, forward_func: Callable[..., Any]
) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    root = model if model is not None else forward_func
    if not isinstance(root, nn.Module):
        raise ValueError(
            f"`layer={layer!r}` is a module path but the explained function is not an nn.Module; "
            "pass `model=` (the module holding the layer) or the layer module itself."
        )
    return get_submodule(root, layer)


def rebind_forward(method: Attribution, forward_func: nn.Module) -> None:
    """Point a configured captum instance, and the instances it wraps, at ``forward_func``.

    Used by the label-free mode: a user's ``IntegratedGradients(encoder)`` is re-pointed at the
    label-free wrapper around ``encoder``. Layers stay the same modules, since the wrapper
    holds the encoder as a submodule.
    """
    for value in vars(method).values():
        if isinstance(value, Attribution) and value is not method:
            rebind_forward(value, forward_func)
    for attr_name in ("forward_func", "model"):
        if hasattr(method, attr_name):
            setattr(method, attr_name, forward_func)
