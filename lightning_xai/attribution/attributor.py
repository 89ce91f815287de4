"""One object that computes attributions with any captum method, supervised or label-free, on
any batch a :class:`~lightning_xai.utilities.batches.BatchAdapter` reads."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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

from lightning_xai.attribution.baselines import BaselineLike, make_baseline, mean_input
from lightning_xai.attribution.checks import FIX_HINT, HookHazards, find_hook_hazards
from lightning_xai.attribution.config import (
    NOISE_TUNNEL_TYPES,
    TOKEN_LAYER_TWINS,
    AttributionConfig,
    NoiseTunnelType,
    TargetLike,
)
from lightning_xai.attribution.label_free import LabelFreeOutput
from lightning_xai.attribution.methods import (
    METHODS,
    MethodLike,
    MethodSpec,
    get_submodule,
    rebind_forward,
    resolve_method,
)
from lightning_xai.attribution.result import AttributionResult
from lightning_xai.utilities.batches import AdaptedBatch, BatchAdapter, check_labels, select_rows
from lightning_xai.utilities.gradients import grad_enabled

__all__ = [
    "NOISE_TUNNEL_TYPES",
    "AttributionWarning",
    "Attributor",
    "NonFiniteAttributionWarning",
    "NonFiniteInputError",
    "NoiseTunnelType",
    "TargetLike",
    "check_arguments",
]

_CAPTUM_CHATTER = (
    ".*did not already require gradients.*",
    ".*Setting forward, backward hooks and attributes on non-linear.*",
    ".*You are providing multiple inputs for Lime.*",
    ".*Setting backward hooks on ReLU activations.*",
    ".*Input Tensor \\d+ did not already require gradients.*",
)
_PERTURBATION = frozenset(
    {
        "occlusion",
        "feature_ablation",
        "feature_permutation",
        "shapley_value_sampling",
        "lime",
        "kernel_shap",
    }
)


class _Explained(nn.Module):
    """The explained function as a module holding ``root``'s layers.

    Called with ``(*inputs, *extras)``; while :attr:`batch` is set the call goes through that
    :class:`AdaptedBatch` (keywords such as ``attention_mask`` in their place), and class scores
    are read from the output as the adapter says (``logits`` of a ``ModelOutput``, ...).
    """

    def __init__(self, fn: Callable[..., Any], root: nn.Module, adapter: BatchAdapter) -> None:
        super().__init__()
        self.root = root
        self._fn = fn
        self._adapter = adapter
        self.batch: AdaptedBatch | None = None

    def forward(self, *args: Any) -> Any:
        if self.batch is None:
            return self._adapter.read_output(self._fn(*args))
        k = len(self.batch.inputs)
        return self.batch.call(self._fn, args[:k], args[k:])


class AttributionWarning(UserWarning):
    """Attributions that are likely wrong (incomplete, or a model hook-based methods misread)."""


class NonFiniteAttributionWarning(AttributionWarning):
    """Attributions or ``f(x) - f(baseline)`` came out NaN or inf (e.g. from non-finite
    weights); the warning names the quantity and, when there is one, a non-finite parameter."""


class NonFiniteInputError(ValueError):
    """An explained input (or another floating-point model argument) holds NaN or inf; raised
    by :meth:`Attributor.attribute` before anything is computed, naming the input and the
    first bad row."""


class Attributor:
    """Compute attributions of a model with any captum method, on any batch layout.

    Args:
        model: the module to explain (its ``forward``, or ``forward_fn``). Layer paths are looked
            up in it.
        config: an :class:`~lightning_xai.attribution.AttributionConfig`, or just the method (a
            name such as ``"integrated_gradients"``, a captum class or a configured instance).
        adapter: how batches are read and the model is called (default ``BatchAdapter()``:
            tensors, ``(x, y, ...)`` tuples, HuggingFace dicts, ``ModelOutput``).
        forward_fn: the function explained instead of ``model.forward``, e.g. ``model.encode``.
        **options: any field of :class:`~lightning_xai.attribution.AttributionConfig`
            (``layer``, ``baseline``, ``target``, ``label_free``, ``noise_tunnel``,
            ``nt_samples``, ``nt_stdevs``, ``internal_batch_size``, ``method_kwargs``,
            ``init_kwargs``, ``blur_sigma``, ``completeness_threshold``, ``check_hooks``);
            with a config they override its values.

    Several explained inputs (``BatchAdapter(inputs=(0, 1))``) give tuples of attributions, one
    per input; batch entries that are not explained (an attention mask, a second input the
    adapter does not explain) reach the model as captum's ``additional_forward_args``. Integer
    token ids are explained through the embedding layer named by ``layer=`` (see
    :data:`~lightning_xai.attribution.TOKEN_LAYER_TWINS`) and summed per token.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> result = Attributor(net, "integrated_gradients").attribute(torch.rand(5, 1, 2, 2))
        >>> result.attributions.shape, result.targets.shape
        (torch.Size([5, 1, 2, 2]), torch.Size([5]))
        >>> result.relative_completeness_gap < 0.05
        True

        A raw ``(x, y)`` batch with ``target="label"``:

        >>> batch = (torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 0]))
        >>> Attributor(net, "saliency", target="label").attribute(batch).targets.tolist()
        [0, 1, 2, 0]
    """

    def __init__(
        self,
        model: nn.Module,
        config: AttributionConfig | MethodLike | None = None,
        *,
        adapter: BatchAdapter | None = None,
        forward_fn: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"`model` must be an nn.Module, got {type(model).__name__}; wrap a function with "
                "`forward_fn=` and pass the module holding its parameters as `model`."
            )
        unknown = sorted(set(options) - set(AttributionConfig.field_names()))
        if unknown:
            raise TypeError(
                f"Attributor got unknown arguments {unknown}; use the fields of "
                f"AttributionConfig: {list(AttributionConfig.field_names())}."
            )
        if isinstance(config, AttributionConfig):
            config = config.replace(**options) if options else config
        elif config is None:
            config = AttributionConfig(**options)
        else:
            config = AttributionConfig(method=config, **options)
        if adapter is None:
            adapter = BatchAdapter()
        if not isinstance(adapter, BatchAdapter):
            raise TypeError(
                f"`adapter` must be a BatchAdapter, got {type(adapter).__name__}; e.g. "
                "adapter=BatchAdapter(inputs=(0, 1), labels=2)."
            )
        if isinstance(config.layer, str):
            get_submodule(model, config.layer)  # fail early with the available paths
        if (
            config.layer is not None
            and not config.spec.needs_layer
            and not any(isinstance(m, nn.Embedding) for m in model.modules())
        ):
            raise ValueError(
                f"`layer={config.layer!r}` was given but `method={config.spec.name!r}` is not a "
                f"layer method, and {type(model).__name__} has no nn.Embedding whose token ids "
                "it could explain. Drop `layer` or choose a layer method such as "
                "'layer_grad_cam'."
            )

        self.config = config
        self.spec: MethodSpec = config.spec
        self.model = model
        self.adapter = adapter
        self.mean_baseline: Tensor | None = None
        fn = forward_fn if forward_fn is not None else model
        self._explained_fn = fn
        self.forward_func: nn.Module
        if config.label_free:
            self.forward_func = LabelFreeOutput(fn, root=model)
        else:
            self.forward_func = _Explained(fn, model, adapter)
        method = config.method
        if isinstance(method, Attribution):
            rebind_forward(method, self.forward_func)
            self.attribution = method
        else:
            layer = config.layer if self.spec.needs_layer else None
            self.attribution = resolve_method(
                method, self.forward_func, layer=layer, model=model, **config.init_kwargs
            )
        self._token_attribution: Attribution | None = None
        self._hazards: HookHazards | None = None
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ configuration views
    method = property(lambda self: self.config.method, doc="The configured method.")
    layer = property(lambda self: self.config.layer, doc="The layer (path or module), if any.")
    baseline = property(lambda self: self.config.baseline, doc="The baseline specification.")
    target = property(lambda self: self.config.target, doc="The explained output.")
    label_free = property(lambda self: self.config.label_free, doc="Label-free mode.")
    noise_tunnel = property(lambda self: self.config.noise_tunnel, doc="NoiseTunnel type.")
    method_kwargs = property(lambda self: self.config.method_kwargs, doc="attribute() kwargs.")
    completeness_threshold = property(
        lambda self: self.config.completeness_threshold, doc="Warning threshold of the gap."
    )

    @property
    def name(self) -> str:
        """The method's name, with the noise tunnel when one is used."""
        return f"{self.noise_tunnel}({self.spec.name})" if self.noise_tunnel else self.spec.name

    @property
    def has_completeness(self) -> bool:
        """Whether attributions should add up to ``f(x) - f(baseline)``."""
        return self.spec.completeness != "none" and self.noise_tunnel is None

    def config_dict(self) -> dict[str, Any]:
        """The full method configuration as plain values (see
        :meth:`~lightning_xai.attribution.AttributionConfig.to_dict`), with a layer module
        recorded by its path in :attr:`model`. ``Attributor(model,
        AttributionConfig.from_dict(d))`` rebuilds the same attributor; with
        ``baseline="mean"`` also restore :attr:`mean_baseline`."""
        return self.config.to_dict(self.model)

    # ------------------------------------------------------------------ public API
    def fit_baseline(
        self, data: Tensor | Iterable[object], max_samples: int | None = None
    ) -> Attributor:
        """Store the mean training input for ``baseline="mean"``.

        Args:
            data: training inputs ``(N, ...)`` or an iterable of batches (e.g. a dataloader),
                read with the adapter (the explained input of each batch).
            max_samples: read at most this many inputs.

        Returns:
            ``self``.
        """
        if not isinstance(data, Tensor):
            data = self._explained_inputs(data)
        mean = mean_input(data, max_samples=max_samples)
        if not bool(torch.isfinite(mean).all()):
            bad = int((~torch.isfinite(mean)).sum())
            raise NonFiniteInputError(
                f"`baseline='mean'`: the mean training input holds NaN or inf in {bad} of "
                f"{mean.numel()} values, so some training inputs are not finite. Clean the "
                "training data, or give the baseline as a finite tensor (baseline=<tensor>)."
            )
        self.mean_baseline = mean
        return self

    def attribute(self, batch: Any, labels: Tensor | None = None) -> AttributionResult:
        """Attribute the chosen output of ``model`` to the explained inputs of ``batch``.

        Works inside ``torch.no_grad`` and ``torch.inference_mode`` too.

        Args:
            batch: an input tensor ``(N, ...)``, or a raw batch as the dataloader yields it
                (split by the adapter into explained inputs, further model arguments and
                labels).
            labels: class labels ``(N,)`` for ``target="label"``; default: the batch's labels.

        Returns:
            An :class:`~lightning_xai.attribution.AttributionResult`; its ``attributions`` and
            ``inputs`` are tuples when the adapter explains several inputs.
        """
        if isinstance(batch, Tensor) and batch.dim() < 2:
            raise ValueError(
                "`inputs` must be a batch tensor (N, ...) with at least 2 dimensions, got "
                f"{tuple(batch.shape)}; add a batch dimension with `x.unsqueeze(0)`."
            )
        adapted = self.adapter.split(batch, self._explained_fn)
        self._check_batch(adapted)
        if labels is None:
            labels = adapted.labels
        if self.label_free:
            return self._attribute_label_free(adapted)
        with grad_enabled(adapted.inputs, adapted.extras, labels) as (inputs, extras, labels):
            inputs = tuple(t.detach() for t in inputs)
            adapted = dataclasses.replace(adapted, inputs=inputs, extras=extras, labels=labels)
            n = len(adapted)
            tokens = self._token_mode(inputs)
            spec = self._effective_spec(tokens)
            if tokens and spec is not self.spec and len(inputs) > 1:
                raise ValueError(
                    f"`method={self.spec.name!r}` explains integer token ids through `layer="
                    f"{self.layer!r}` for one explained input, but the adapter explains "
                    f"{len(inputs)}; explain the ids alone (BatchAdapter(inputs='input_ids')) "
                    "and let the rest reach the model as further arguments."
                )
            self.forward_func.batch = adapted  # type: ignore[union-attr]
            try:
                baselines = self._baselines(inputs, spec, tokens, bool(extras))
                with torch.no_grad():
                    outputs = self.forward_func(*inputs, *extras)
                target = self._resolve_target(outputs, labels, n)
                self._check_hazards(inputs, extras)
                attributions = self._explain(inputs, extras, target, baselines, spec, tokens)
                delta = None
                if spec.completeness != "none" and self.noise_tunnel is None and baselines:
                    with torch.no_grad():
                        reference = self._baseline_scores(adapted, baselines, target, spec)
                    delta = _select(outputs, target) - reference.to(outputs.device)
            finally:
                self.forward_func.batch = None  # type: ignore[union-attr]
        mask = None
        if tokens:
            attributions, mask = self._token_scores(attributions, adapted, baselines)
        single = adapted.single and len(inputs) == 1
        predictions, probabilities = _predictions(outputs)
        result = AttributionResult(
            attributions=attributions[0].detach() if single else _detach(attributions),
            inputs=inputs[0] if single else inputs,
            targets=target,
            method=self.name,
            layer=self.layer if isinstance(self.layer, str) else None,
            output_delta=None if delta is None else delta.detach(),
            mask=mask,
            labels=_class_labels(labels, n),
            predictions=predictions,
            probabilities=probabilities,
        )
        self._warn_if_non_finite(result)
        self._warn_if_incomplete(result, spec)
        return result

    def infidelity(
        self, result: AttributionResult, n_perturb_samples: int = 8, noise_scale: float = 0.1
    ) -> Tensor:
        """captum's infidelity of input-shaped attributions (lower is better), per example.

        Perturbations are Gaussian noise with standard deviation ``noise_scale``. Single
        floating-point inputs only.
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
                    result.attributions.to(x.device),  # type: ignore[union-attr]
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
        Single floating-point inputs only.
        """
        from captum.metrics import sensitivity_max

        self._require_input_shaped(result, "sensitivity")

        def explain(inputs: tuple[Tensor], target: Tensor | None = None) -> tuple[Tensor]:
            # captum passes and expects tuples, and calls this under no_grad
            with grad_enabled(inputs[0]) as (x,):
                refs = self._references(x)
                baselines = self._baselines((x,), self.spec, False, False)
                out = self._explain((x,), refs, target, baselines, self.spec, False)
                return (out[0],)

        with grad_enabled(result.inputs, result.targets) as (x, target):
            kwargs = {} if target is None else {"target": target}
            return sensitivity_max(
                explain,
                x,
                perturb_radius=perturb_radius,
                n_perturb_samples=n_perturb_samples,
                **kwargs,
            ).detach()

    # ------------------------------------------------------------------ label-free
    def _attribute_label_free(self, adapted: AdaptedBatch) -> AttributionResult:
        if len(adapted.inputs) != 1 or adapted.extras:
            raise ValueError(
                "label_free=True explains one input of the representation: the adapter gives "
                f"{len(adapted.inputs)} explained inputs and {len(adapted.extras)} further model "
                "arguments. Use BatchAdapter(inputs=<one entry>, forward_kwargs=None)."
            )
        with grad_enabled(adapted.inputs[0]) as (x,):
            x = x.detach()
            if self._token_mode((x,)):
                raise ValueError(
                    "label_free=True does not explain integer token ids; explain the "
                    "embeddings instead (an encoder taking `inputs_embeds`)."
                )
            spec = self.spec
            baselines = self._baselines((x,), spec, False, False)
            refs = self._references(x)
            n = len(x)
            outputs = sum(r.reshape(n, -1).square().sum(1) for r in refs)
            self._check_hazards((x,), refs)
            attributions = self._explain((x,), refs, None, baselines, spec, False)[0]
            delta = None
            if self.has_completeness and baselines:
                with torch.no_grad():
                    leaves = self.forward_func.encode(baselines[0])  # type: ignore[operator]
                k = len(baselines[0])
                scores = sum(
                    r.reshape(n, -1) @ b.detach().reshape(k, -1).T for r, b in zip(refs, leaves)
                )  # (n, k): <f(b_k), f(x_n)>
                delta = outputs - _pair_or_mean(scores, spec, n)  # type: ignore[arg-type]
        result = AttributionResult(
            attributions=attributions.detach(),
            inputs=x,
            targets=None,
            method=self.name,
            layer=self.layer if isinstance(self.layer, str) else None,
            output_delta=None if delta is None else delta.detach(),
        )
        self._warn_if_non_finite(result)
        self._warn_if_incomplete(result, self.spec)
        return result

    def _references(self, x: Tensor) -> tuple[Tensor, ...]:
        if isinstance(self.forward_func, LabelFreeOutput):
            return self.forward_func.references(x)
        return ()

    # ------------------------------------------------------------------ tokens
    @staticmethod
    def _token_mode(inputs: tuple[Tensor, ...]) -> bool:
        return any(not (t.is_floating_point() or t.is_complex()) for t in inputs)

    def _embeddings(self) -> list[str]:
        return [name for name, m in self.model.named_modules() if isinstance(m, nn.Embedding)]

    def _effective_spec(self, tokens: bool) -> MethodSpec:
        """The spec of the method that runs: the layer twin for token ids."""
        spec = self.spec
        if not tokens:
            if self.layer is not None and not spec.needs_layer:
                raise ValueError(
                    f"`layer={self.layer!r}` was given but `method={spec.name!r}` is not a layer "
                    "method, and the inputs are floating point (an input method's `layer` names "
                    "the embedding layer of integer token ids). Drop `layer` or choose a layer "
                    "method such as 'layer_grad_cam'."
                )
            return spec
        if self.noise_tunnel is not None:
            raise ValueError(
                f"`noise_tunnel={self.noise_tunnel!r}` adds noise to the inputs, which are "
                "integer token ids; drop noise_tunnel or explain float inputs."
            )
        embeddings = self._embeddings()
        if spec.needs_layer or spec.name in _PERTURBATION:
            return spec  # a layer method chosen by the user, or perturbations of the ids
        twin = TOKEN_LAYER_TWINS.get(spec.name)
        if twin is None:
            raise ValueError(
                f"`method={spec.name!r}` cannot explain integer token ids. Use one of "
                f"{sorted(TOKEN_LAYER_TWINS)} with `layer=` naming the embedding layer "
                f"({_embedding_hint(embeddings)}), or a perturbation method such as "
                "'feature_ablation' or 'occlusion'."
            )
        if self.layer is None:
            raise ValueError(
                f"The explained input holds integer token ids, which `method={spec.name!r}` "
                "cannot differentiate: set `layer=` to the embedding layer they go through "
                f"({_embedding_hint(embeddings)}), or use a perturbation method such as "
                "'feature_ablation'. If the ids are really features, make them floating point "
                "(e.g. in the dataset or with BatchAdapter(inputs=<callable>))."
            )
        if self._token_attribution is None:
            init_kwargs = dict(self.config.init_kwargs)
            if spec.name == "saliency":
                init_kwargs.setdefault("multiply_by_inputs", False)
            self._token_attribution = resolve_method(
                twin, self.forward_func, layer=self.layer, model=self.model, **init_kwargs
            )
        twin_spec = METHODS[twin]
        bad = sorted(set(self.method_kwargs) - twin_spec.accepts - {"abs"})
        if bad:
            raise ValueError(
                f"`method_kwargs` keys {bad} are not arguments of {twin_spec.cls.__name__}, "
                f"which explains token ids for `method={spec.name!r}`; drop them."
            )
        return twin_spec

    def _token_scores(
        self,
        attributions: tuple[Tensor, ...],
        adapted: AdaptedBatch,
        baselines: tuple[Tensor, ...] | None,
    ) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """Embedding attributions ``(N, T, E)`` summed to ``(N, T)``; padding set to 0."""
        ids = next(t for t in adapted.inputs if not t.is_floating_point())
        out = []
        for a in attributions:
            if a.dim() == ids.dim() + 1 and a.shape[: ids.dim()] == ids.shape:
                if self.spec.name == "saliency" and self.method_kwargs.get("abs", True):
                    a = a.abs()
                a = a.sum(-1)
            out.append(a)
        mask = None
        for value, (_, _, keyword) in zip(adapted.extras, _extra_slots(adapted)):
            if keyword == "attention_mask" and isinstance(value, Tensor):
                mask = value.to(ids.device) != 0
        if mask is None:
            pad = _pad_id(self.baseline)
            mask = ids != pad if pad is not None else torch.ones_like(ids, dtype=torch.bool)
        if mask.shape == ids.shape:
            out = [a * mask.to(a.dtype) if a.shape == ids.shape else a for a in out]
        return tuple(out), mask

    # ------------------------------------------------------------------ targets
    def _resolve_target(self, outputs: Any, labels: Tensor | None, n: int) -> Tensor | None:
        if not isinstance(outputs, Tensor):
            raise ValueError(
                f"The model's class scores are a {type(outputs).__name__}, not a tensor; say "
                "where they are with BatchAdapter(output=<index, key or callable>)."
            )
        if outputs.dim() != 2:
            if outputs.dim() == 1 and self.target is None:
                return None
            raise ValueError(
                f"The model output has shape {tuple(outputs.shape)}; attribution needs one "
                "output per example (N,) or class scores (N, C). Explain a representation with "
                "label_free=True, or pick the scores with BatchAdapter(output=<callable>)."
            )
        num_classes = outputs.shape[1]
        target: Any = "pred" if self.target is None else self.target
        if isinstance(target, str):
            if target == "pred":
                return outputs.argmax(dim=1)
            if labels is None:
                raise ValueError(
                    "`target='label'` needs the labels: call attribute(inputs, labels), give "
                    "a batch with labels (see BatchAdapter(labels=...)), or use target='pred'."
                )
            labels = check_labels(labels.to(outputs.device), outputs, source="target='label'")
            if labels.dim() != 1:
                raise ValueError(
                    f"`target='label'` needs one class index per example, but the labels have "
                    f"shape {tuple(labels.shape)} (soft or multi-label targets); use "
                    "target='pred' or a class index."
                )
            return labels.long()
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

    # ------------------------------------------------------------------ baselines
    def _baselines(
        self, inputs: tuple[Tensor, ...], spec: MethodSpec, tokens: bool, expand: bool
    ) -> tuple[Tensor, ...] | None:
        if spec.baselines not in ("single", "distribution"):
            return None
        given = self.baseline
        if isinstance(given, tuple):
            if len(given) != len(inputs):
                raise ValueError(
                    f"`baseline` has {len(given)} entries but the adapter explains "
                    f"{len(inputs)} inputs; give one baseline per input."
                )
            per_input: tuple[BaselineLike, ...] = given
        else:
            per_input = (given,) * len(inputs)
        if len(inputs) > 1 and "mean" in [b for b in per_input if isinstance(b, str)]:
            raise ValueError(
                "`baseline='mean'` supports one explained input; with several inputs give "
                "'zeros', a number, 'blur' or a tuple of tensors, one per input."
            )
        n = len(inputs[0])
        distribution = spec.baselines == "distribution"
        out = []
        for x, b in zip(inputs, per_input):
            if not (x.is_floating_point() or x.is_complex()):
                ref = _token_baseline(b, x)
            else:
                ref = make_baseline(
                    b,
                    x,
                    mean=self.mean_baseline,
                    blur_sigma=self.config.blur_sigma,
                    distribution=distribution,
                )
            out.append(ref)
        if len(out) == 1 and issubclass(spec.cls, DeepLiftShap | LayerDeepLiftShap):
            if len(out[0]) == 1:
                out[0] = out[0].expand(2, *out[0].shape[1:])  # captum needs two or more
        sizes = {len(b) for b in out}
        if len(sizes) > 1:
            k = max(sizes)
            if sizes - {1, k}:
                raise ValueError(
                    f"The baselines of the inputs have different numbers of references "
                    f"{sorted(sizes)}; give each input the same number (or one)."
                )
            out = [b.expand(k, *b.shape[1:]) if len(b) == 1 else b for b in out]
        if (expand or tokens) and not distribution and len(out[0]) == 1:
            out = [b.expand(n, *b.shape[1:]).contiguous() for b in out]
        return tuple(out)

    def _baseline_scores(
        self,
        adapted: AdaptedBatch,
        baselines: tuple[Tensor, ...],
        target: Tensor | None,
        spec: MethodSpec,
    ) -> Tensor:
        """``f(baseline)`` per example: paired with the example when there is one baseline
        per example, else averaged over the references (further model arguments, such as an
        attention mask, are those of the example)."""
        n, k = len(adapted), len(baselines[0])
        f = self.forward_func
        extras = adapted.extras
        if not extras:
            out = f(*baselines)  # (k, C) or (k,)
            if target is None:
                scores = out.reshape(1, k).expand(n, k)
            else:
                scores = out[:, target.to(out.device)].T  # (n, k)
            return _pair_or_mean(scores, spec, n)
        if k == n and spec.baselines == "single":
            return _select(f(*baselines, *extras), target)
        rows = torch.arange(n).repeat_interleave(k)
        tiled = tuple(b.repeat(n, *([1] * (b.dim() - 1))) for b in baselines)
        tiled_extras = select_rows(tuple(extras), rows, n)
        repeated = None if target is None else target.repeat_interleave(k)
        return _select(f(*tiled, *tiled_extras), repeated).reshape(n, k).mean(1)

    # ------------------------------------------------------------------ captum
    def _attribute_kwargs(
        self,
        inputs: tuple[Tensor, ...],
        extras: tuple[Any, ...],
        target: Tensor | None,
        baselines: tuple[Tensor, ...] | None,
        spec: MethodSpec,
    ) -> dict[str, Any]:
        accepts = spec.accepts
        kwargs: dict[str, Any] = {}
        single = len(inputs) == 1
        if "target" in accepts and target is not None:
            kwargs["target"] = target
        if baselines is not None:
            kwargs["baselines"] = baselines[0] if single else baselines
        if extras:
            kwargs["additional_forward_args"] = tuple(extras)
        if self.config.internal_batch_size is not None and "internal_batch_size" in accepts:
            kwargs["internal_batch_size"] = self.config.internal_batch_size
        if "show_progress" in accepts:
            kwargs["show_progress"] = False
        if "sliding_window_shapes" in accepts and "sliding_window_shapes" not in self.method_kwargs:
            windows = [_default_window(x) for x in inputs]
            kwargs["sliding_window_shapes"] = (
                windows[0][0] if single else tuple(w for w, _ in windows)
            )
            kwargs.setdefault("strides", windows[0][1] if single else tuple(s for _, s in windows))
        if spec is self.spec:
            kwargs.update(self.method_kwargs)
        else:  # the layer twin of a token-id method: `abs` belongs to saliency itself
            kwargs.update({k: v for k, v in self.method_kwargs.items() if k in accepts})
        return kwargs

    def _explain(
        self,
        inputs: tuple[Tensor, ...],
        extras: tuple[Any, ...],
        target: Tensor | None,
        baselines: tuple[Tensor, ...] | None,
        spec: MethodSpec,
        tokens: bool,
    ) -> tuple[Tensor, ...]:
        kwargs = self._attribute_kwargs(inputs, extras, target, baselines, spec)
        prepared = tuple(
            x.detach().clone().requires_grad_(True) if x.is_floating_point() else x for x in inputs
        )
        method: Attribution = self.attribution
        if tokens and self._token_attribution is not None and spec is not self.spec:
            method = self._token_attribution
        if self.noise_tunnel is not None:
            method = NoiseTunnel(method)
            kwargs.update(
                nt_type=self.noise_tunnel,
                nt_samples=self.config.nt_samples,
                stdevs=self.config.nt_stdevs,
            )
        with warnings.catch_warnings():
            _silence_captum()
            try:
                out = method.attribute(prepared[0] if len(prepared) == 1 else prepared, **kwargs)
            except TypeError as err:
                if "no rule defined" in str(err):
                    raise TypeError(
                        f"`method={self.spec.name!r}` has no LRP rule for a layer of "
                        f"{type(self.model).__name__}: {err} Set `module.rule` on that layer "
                        "(captum.attr._utils.lrp_rules) or choose another method."
                    ) from err
                raise
            except AssertionError as err:
                raise ValueError(
                    f"captum's {type(method).__name__} rejected the arguments of "
                    f"`method={self.spec.name!r}` ({err or 'an internal check failed'}) with "
                    f"`method_kwargs={dict(self.method_kwargs)!r}` and "
                    f"`baseline={self.baseline!r}` on inputs of shape "
                    f"{[tuple(x.shape) for x in inputs]}; fix `method_kwargs` (see "
                    f"{spec.cls.__name__}.attribute) or `baseline`."
                ) from err
            except RuntimeError as err:
                if "used more than once" in str(err) or "does not contain some of the input" in str(
                    err
                ):
                    raise RuntimeError(
                        f"`method={self.spec.name!r}` failed because an activation module is used "
                        f"more than once in the forward pass. {FIX_HINT}"
                    ) from err
                raise
        if len(inputs) == 1:
            if isinstance(out, tuple):  # layer methods on layers with several outputs
                out = out[0]
            return (out,)
        return tuple(out) if isinstance(out, tuple) else (out,)

    # ------------------------------------------------------------------ checks
    def _input_name(self, i: int, count: int) -> str:
        keys = self.adapter.inputs
        if isinstance(keys, tuple | list) and len(keys) == count:
            return f"explained input {keys[i]!r}"
        if isinstance(keys, str | int) and count == 1:
            return f"explained input {keys!r}"
        return f"explained input {i}" if count > 1 else "the explained input"

    def _check_batch(self, adapted: AdaptedBatch) -> None:
        """Empty batches and non-finite inputs fail before anything is computed."""
        n = len(adapted)
        if n == 0:
            raise ValueError(
                "The batch is empty (0 examples): there is nothing to attribute. Give at least "
                "one example (check the dataset, `num_samples` or the indices selected)."
            )
        count = len(adapted.inputs)
        named = [(self._input_name(i, count), x) for i, x in enumerate(adapted.inputs)]
        slots = _extra_slots(adapted)
        for j, value in enumerate(adapted.extras):
            keyword = slots[j][2] if j < len(slots) else None
            label = f"model argument {keyword!r}" if keyword else f"further model argument {j}"
            named.append((label, value))
        for label, x in named:
            if not isinstance(x, Tensor) or not (x.is_floating_point() or x.is_complex()):
                continue
            if x.dim() == 0 or len(x) != n:
                continue
            bad = ~torch.isfinite(x).reshape(n, -1).all(dim=1)
            if bool(bad.any()):
                rows = bad.nonzero().flatten().tolist()
                raise NonFiniteInputError(
                    f"{label} holds NaN or inf in {len(rows)} of {n} examples, first at row "
                    f"{rows[0]} of the batch; attributions of non-finite inputs are "
                    "meaningless. Remove or repair those examples (check the dataset and its "
                    "transforms)."
                )

    def diagnose_non_finite(self, result: AttributionResult) -> str:
        """A sentence naming what is not finite in ``result`` and a likely cause (the first
        non-finite parameter of the model, if any); ``""`` when everything is finite.

        Example:
            >>> net = nn.Linear(2, 2)
            >>> with torch.no_grad():
            ...     net.weight[0, 0] = float("nan")
            >>> attributor = Attributor(net, "saliency")
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     r = attributor.attribute(torch.ones(3, 2))
            >>> [type(w.message).__name__ for w in caught]
            ['NonFiniteAttributionWarning']
            >>> attributor.diagnose_non_finite(r)
            "attributions of 3 of 3 examples are NaN or inf; the model's parameter 'weight' is not finite (diverged training?)"
        """
        bad = result.non_finite()
        if not bad:
            return ""
        n = len(result.parts()[0][0])
        rows = torch.zeros(n, dtype=torch.bool)
        for a, _ in result.parts():
            rows |= ~torch.isfinite(a.detach().reshape(n, -1)).all(dim=1).cpu()
        if result.output_delta is not None:
            rows |= ~torch.isfinite(result.output_delta.detach()).cpu()
        what = " and ".join(
            "attributions" if b == "attributions" else "f(x) - f(baseline)" for b in bad
        )
        text = f"{what} of {int(rows.sum())} of {n} examples are NaN or inf"
        parameter = next(
            (
                name
                for name, p in self.model.named_parameters()
                if p.is_floating_point() and not bool(torch.isfinite(p).all())
            ),
            None,
        )
        if parameter is not None:
            text += f"; the model's parameter {parameter!r} is not finite (diverged training?)"
        return text

    def _warn_if_non_finite(self, result: AttributionResult) -> None:
        message = self.diagnose_non_finite(result)
        if message:
            self._warn_once(
                "non_finite",
                f"`method={self.spec.name!r}`: {message}. The result is returned as is; do "
                "not read explanations from it.",
                NonFiniteAttributionWarning,
            )

    def _check_hazards(self, inputs: tuple[Tensor, ...], extras: tuple[Any, ...]) -> None:
        if not (self.config.check_hooks and self.spec.hook_based) or self._hazards is not None:
            return
        deeplift = issubclass(self.spec.cls, DeepLift | LayerDeepLift)
        n = len(inputs[0])
        first = select_rows(tuple(extras), [0], n) if extras else ()
        self._hazards = find_hook_hazards(
            self.model,
            (*(x[:1] for x in inputs), *first),
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

    def _warn_if_incomplete(self, result: AttributionResult, spec: MethodSpec) -> None:
        if self.completeness_threshold is None or spec.completeness != "exact":
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
        elif "n_steps" in spec.accepts:
            fix = "Increase `n_steps` in method_kwargs (e.g. {'n_steps': 200})."
        else:
            fix = "Increase the number of samples of the method."
        self._warn_once(
            "completeness",
            f"`method={self.spec.name!r}`: the attributions miss f(x) - f(baseline) by "
            f"{gap:.1%} (relative completeness gap above completeness_threshold="
            f"{self.completeness_threshold}). {fix}",
        )

    def _warn_once(
        self, key: str, message: str, category: type[Warning] = AttributionWarning
    ) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, category, stacklevel=3)

    def _require_input_shaped(self, result: AttributionResult, what: str) -> None:
        if isinstance(result.inputs, tuple) or isinstance(result.attributions, tuple):
            raise ValueError(
                f"{what} supports one explained input; this result has "
                f"{len(result.inputs)} inputs. Explain one input (BatchAdapter(inputs=...))."
            )
        if not result.inputs.is_floating_point():
            raise ValueError(
                f"{what} perturbs the inputs, which are integer token ids here; turn it off."
            )
        if self.spec.needs_layer or result.attributions.shape != result.inputs.shape:
            raise ValueError(
                f"{what} needs attributions shaped like the inputs; `method={self.spec.name!r}` "
                f"gives {tuple(result.attributions.shape)} for inputs "
                f"{tuple(result.inputs.shape)}. Use an input attribution method."
            )

    def _explained_inputs(self, data: Iterable[object]) -> Iterator[Tensor]:
        for batch in data:
            yield self.adapter.split(batch, self._explained_fn).inputs[0]


def check_arguments(method: MethodLike, **options: Any) -> MethodSpec:
    """Validate :class:`Attributor` arguments that do not need the model; return the method spec.

    A thin wrapper of :class:`~lightning_xai.attribution.AttributionConfig`, which holds the
    checks.

    Raises:
        ValueError: naming the argument, the value and the fix.
        TypeError: for arguments of the wrong type.

    Example:
        >>> check_arguments("integrated_gradients", method_kwargs={"n_steps": 16}).name
        'integrated_gradients'
    """
    return AttributionConfig(method=method, **options).spec


def _predictions(outputs: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Predicted class and its probability from class scores ``(N, C)``: softmax of logits, or
    the scores themselves when every row already is a probability distribution."""
    if outputs.dim() != 2 or outputs.shape[1] < 2 or not outputs.is_floating_point():
        return None, None
    scores = outputs.detach().float()
    sums = scores.sum(dim=1)
    is_probability = bool((scores >= 0).all()) and bool(
        torch.allclose(sums, torch.ones_like(sums), atol=1e-4)
    )
    probs = scores if is_probability else scores.softmax(dim=1)
    predictions = scores.argmax(dim=1)
    return predictions, probs.gather(1, predictions[:, None])[:, 0]


def _class_labels(labels: Any, n: int) -> Tensor | None:
    """The labels when they are one integer class per example, else ``None``."""
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point():
        return None
    return labels.detach()


def _pair_or_mean(scores: Tensor, spec: MethodSpec, n: int) -> Tensor:
    """Per-example reference score from ``(n, k)`` scores: paired when each example has its
    own baseline, else the mean over the references."""
    if spec.baselines == "single" and scores.shape[1] == n:
        return scores.diagonal()
    return scores.mean(dim=1)


def _detach(values: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(v.detach() for v in values)


def _extra_slots(adapted: AdaptedBatch) -> list[tuple[str, int, str | None]]:
    """The (kind, position, keyword) slot of each extra, in extras order."""
    slots = [s for s in adapted._slots if s[0] == "extra"]
    return sorted(slots, key=lambda s: s[1])


def _pad_id(baseline: Any) -> int | None:
    if isinstance(baseline, str):
        return 0 if baseline == "zeros" else None
    if isinstance(baseline, int | float) and float(baseline).is_integer():
        return int(baseline)
    return None


def _token_baseline(baseline: Any, ids: Tensor) -> Tensor:
    """Reference token ids shaped like ``ids``: a pad id (``"zeros"``: 0), or given ids."""
    if isinstance(baseline, Tensor):
        if baseline.is_floating_point():
            raise ValueError(
                "`baseline` is a floating-point tensor but the explained input holds integer "
                "token ids; give reference token ids (an int, or a tensor of ids)."
            )
        ref = baseline.to(device=ids.device, dtype=ids.dtype)
        if tuple(ref.shape) == tuple(ids.shape[1:]):
            ref = ref.unsqueeze(0)
        if tuple(ref.shape[1:]) != tuple(ids.shape[1:]):
            raise ValueError(
                f"`baseline` has shape {tuple(baseline.shape)}, which fits neither one sequence "
                f"{tuple(ids.shape[1:])} nor a batch of them."
            )
        return ref
    pad = _pad_id(baseline)
    if pad is None:
        raise ValueError(
            f"`baseline={baseline!r}` cannot be a reference for integer token ids; give the "
            "reference token id (baseline=0 for padding, or e.g. a [MASK] id)."
        )
    return torch.full((1, *ids.shape[1:]), pad, dtype=ids.dtype, device=ids.device)


def _embedding_hint(embeddings: list[str]) -> str:
    if not embeddings:
        return "the model has no nn.Embedding module"
    shown = ", ".join(repr(e) for e in embeddings[:6])
    return f"nn.Embedding modules found: {shown}" + (" ..." if len(embeddings) > 6 else "")


def _select(outputs: Tensor, target: Tensor | None) -> Tensor:
    if target is None:
        return outputs.reshape(len(outputs))
    return outputs.gather(1, target.reshape(-1, 1).to(outputs.device)).squeeze(1)


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
