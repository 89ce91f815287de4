"""The one reader of batches and caller of models: :class:`BatchAdapter`.

Every callback, algorithm and module that touches a batch goes through a ``BatchAdapter``. It
says what in a batch is explained (the *inputs*), what the labels are, what else the model's
``forward`` needs (keyword arguments such as ``attention_mask``, or further positional inputs),
and how to read class scores from what the model returns (a tensor, a tuple, a dict or a
HuggingFace ``ModelOutput``).

The defaults infer the common layouts:

* a tensor ``x``: explained, no labels;
* a tuple or list ``(x, y, ...)``: ``x`` explained, ``y`` the labels (or the last entry, when
  ``batch[1]`` does not look like labels and the last entry does); the remaining tensors fill
  the forward's remaining parameters that are required or default to ``None``, in order, so a
  ``forward(x, lengths=None)`` is never called without its ``lengths``;
* a dict: the first of :data:`INPUT_KEYS` is explained, the first of :data:`LABEL_KEYS` holds
  the labels, and every other key that names a parameter of the forward is passed by keyword
  (as HuggingFace's ``Trainer`` chooses columns);
* outputs: a tensor, the first element of a tuple, or ``logits`` of a dict or ``ModelOutput``.

This module imports no Lightning: algorithms use it in a notebook as callbacks do in a run.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "INPUT_KEYS",
    "LABEL_KEYS",
    "OUTPUT_KEYS",
    "AdaptedBatch",
    "BatchAdapter",
    "batch_size",
    "check_labels",
    "select_rows",
]

Key = int | str
InputsLike = int | str | Sequence[int | str] | Callable[..., Any] | None
LabelsLike = int | str | Callable[..., Any] | None
ForwardKwargsLike = str | Sequence[int | str] | Mapping[str, int | str] | None
OutputLike = int | str | Callable[..., Any] | None

#: Dict keys tried, in order, for the explained input.
INPUT_KEYS: tuple[str, ...] = (
    "input_ids",
    "pixel_values",
    "input_values",
    "input_features",
    "inputs_embeds",
    "x",
    "inputs",
    "input",
    "features",
    "image",
    "images",
)
#: Dict keys tried, in order, for the labels.
LABEL_KEYS: tuple[str, ...] = ("labels", "label", "label_ids", "y", "target", "targets")
#: Keys (or attributes) tried, in order, for class scores in a dict or ``ModelOutput``.
OUTPUT_KEYS: tuple[str, ...] = ("logits", "scores", "y_hat", "output", "out")


# ---------------------------------------------------------------------------- small helpers
def batch_size(batch: Any) -> int:
    """The number of examples in ``batch``: the length of its first tensor.

    Example:
        >>> batch_size({"input_ids": torch.zeros(3, 5, dtype=torch.long)})
        3
    """
    for leaf in _leaves(batch):
        if isinstance(leaf, Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    raise ValueError(
        f"The batch holds no tensor with a batch dimension ({_describe(batch)}); a batch must "
        "be a tensor, a tuple/list or a dict of tensors of shape (N, ...)."
    )


def select_rows(batch: Any, index: Tensor | slice | Sequence[int], n: int | None = None) -> Any:
    """The examples ``index`` of ``batch``: every tensor whose first dimension is the batch size
    ``n`` is indexed, anything else (scalars, strings, shared tensors) is kept.

    Example:
        >>> b = (torch.arange(6).reshape(3, 2), torch.tensor([0, 1, 2]), "meta")
        >>> select_rows(b, [2, 0])
        (tensor([[4, 5],
                [0, 1]]), tensor([2, 0]), 'meta')
    """
    n = batch_size(batch) if n is None else n
    if not isinstance(index, (slice, Tensor)):
        index = torch.as_tensor(list(index), dtype=torch.long)

    def pick(obj: Any) -> Any:
        if isinstance(obj, Tensor):
            if obj.dim() > 0 and obj.shape[0] == n:
                return obj[index.to(obj.device) if isinstance(index, Tensor) else index]
            return obj
        if isinstance(obj, Mapping):
            return (
                type(obj)(**{k: pick(v) for k, v in obj.items()})
                if _is_model_output(obj)
                else {k: pick(v) for k, v in obj.items()}
            )
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
            return type(obj)(*(pick(v) for v in obj))
        if isinstance(obj, (tuple, list)):
            return type(obj)(pick(v) for v in obj)
        return obj

    return pick(batch)


def check_labels(labels: Tensor, scores: Tensor, *, source: str = "labels") -> Tensor:
    """Check ``labels`` against class ``scores`` before they are used; return them unchanged.

    Class indices ``(N,)`` must be integers in ``[0, C)`` for scores ``(N, C)``; soft or
    multi-label targets ``(N, C)`` must match the scores' shape; for one score per example
    ``(N,)`` or ``(N, 1)`` the labels need one value per example.

    Raises:
        ValueError: naming ``source`` (where the labels came from), what was found and the fix.

    Example:
        >>> check_labels(torch.tensor([0, 2]), torch.zeros(2, 3)).tolist()
        [0, 2]
        >>> check_labels(torch.tensor([0, 3]), torch.zeros(2, 3))
        Traceback (most recent call last):
        ...
        ValueError: The labels (labels) hold class indices up to 3, but the model gives 3 class scores; labels must lie in [0, 2]. Check `labels=` of the BatchAdapter, or the model's number of outputs.
    """
    if not isinstance(labels, Tensor):
        raise ValueError(
            f"The labels ({source}) must be a tensor, got {type(labels).__name__}; point "
            "`labels=` of the BatchAdapter at the label tensor, or use labels=None."
        )
    n = len(scores)
    fix = "Check `labels=` of the BatchAdapter"
    if labels.dim() == 0 or labels.shape[0] != n:
        raise ValueError(
            f"The labels ({source}) have shape {tuple(labels.shape)} but the model scored {n} "
            f"examples; {fix}: it must select one label per example."
        )
    if scores.dim() == 2 and scores.shape[1] > 1:
        c = scores.shape[1]
        if labels.dim() == 1:
            if labels.is_floating_point() or labels.is_complex():
                raise ValueError(
                    f"The labels ({source}) are floating point {tuple(labels.shape)} but the "
                    f"model gives {c} class scores, which need integer class indices; {fix} "
                    "(did it pick an input instead of the labels?)."
                )
            if n and (int(labels.min()) < 0 or int(labels.max()) >= c):
                bad = int(labels.max()) if int(labels.max()) >= c else int(labels.min())
                raise ValueError(
                    f"The labels ({source}) hold class indices {'up to' if bad >= c else 'down to'}"
                    f" {bad}, but the model gives {c} class scores; labels must lie in "
                    f"[0, {c - 1}]. {fix}, or the model's number of outputs."
                )
            return labels
        if tuple(labels.shape) != tuple(scores.shape):
            raise ValueError(
                f"The labels ({source}) have shape {tuple(labels.shape)}, which fits neither "
                f"class indices ({n},) nor per-class targets {tuple(scores.shape)}; {fix} "
                "(did it pick an input instead of the labels?)."
            )
        return labels
    if labels.numel() != n:
        raise ValueError(
            f"The labels ({source}) have shape {tuple(labels.shape)}, but the model gives one "
            f"score per example; {fix}: it must select one value per example."
        )
    return labels


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, Mapping):
        return [leaf for v in obj.values() for leaf in _leaves(v)]
    if isinstance(obj, (tuple, list)):
        return [leaf for v in obj for leaf in _leaves(v)]
    return [obj]


def _describe(batch: Any) -> str:
    def one(v: Any) -> str:
        if isinstance(v, Tensor):
            return f"Tensor{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
        return type(v).__name__

    if isinstance(batch, Mapping):
        return "dict with " + ", ".join(f"{k!r}: {one(v)}" for k, v in batch.items())
    if isinstance(batch, (tuple, list)):
        return f"{type(batch).__name__} of {len(batch)}: " + ", ".join(
            f"[{i}] {one(v)}" for i, v in enumerate(batch)
        )
    return one(batch)


def _is_model_output(obj: Any) -> bool:
    return any(c.__name__ == "ModelOutput" for c in type(obj).__mro__)


def _looks_like_labels(value: Any) -> bool:
    if not isinstance(value, Tensor):
        return False
    if value.dim() == 1:
        return True
    return value.dim() == 2 and not value.is_floating_point() and value.shape[1] == 1


def resolve_callable(value: Any) -> Any:
    """``value`` itself, or the object a dotted import path (``"pkg.module.name"``) names.

    Strings that do not import are returned unchanged (they may be dict keys).

    Example:
        >>> resolve_callable("torch.sigmoid") is torch.sigmoid
        True
        >>> resolve_callable("input_ids")
        'input_ids'
    """
    if not isinstance(value, str) or "." not in value.strip(".") or " " in value:
        return value
    module_name, _, attr = value.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return value
    return obj if callable(obj) else value


@dataclass(frozen=True)
class _Signature:
    names: tuple[str, ...]  # parameters that can be passed positionally, in order
    fillable: tuple[bool, ...]  # required, or defaulting to None
    required: tuple[bool, ...]
    keywords: frozenset[str]  # every name accepted by keyword


def _signature(fn: Any) -> _Signature | None:
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    names, fillable, required, keywords = [], [], [], set()
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
            fillable.append(p.default is p.empty or p.default is None)
            required.append(p.default is p.empty)
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            keywords.add(p.name)
    return _Signature(tuple(names), tuple(fillable), tuple(required), frozenset(keywords))


# ---------------------------------------------------------------------------- the split batch
@dataclass
class AdaptedBatch:
    """One batch, split by a :class:`BatchAdapter` into what the model is called with.

    Attributes:
        inputs: the explained inputs, always a tuple (one tensor per input).
        extras: the values of every other model argument, in a fixed order; captum receives
            them as ``additional_forward_args``.
        labels: the labels, or ``None``.
        single: whether the adapter was configured with one input (results are then returned
            as a tensor rather than a tuple).
    """

    inputs: tuple[Tensor, ...]
    extras: tuple[Any, ...]
    labels: Tensor | None
    single: bool
    _slots: tuple[tuple[str, int, str | None], ...]  # (kind "input"/"extra", position, keyword)
    _read: Callable[[Any], Any]

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    def arguments(
        self, inputs: Sequence[Any] | None = None, extras: Sequence[Any] | None = None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The ``(args, kwargs)`` of the model call, with ``inputs``/``extras`` replaced when
        given (e.g. by perturbed inputs, or single rows inside ``vmap``)."""
        inputs = self.inputs if inputs is None else tuple(inputs)
        extras = self.extras if extras is None else tuple(extras)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for kind, i, keyword in self._slots:
            value = inputs[i] if kind == "input" else extras[i]
            if keyword is None:
                args.append(value)
            else:
                kwargs[keyword] = value
        return tuple(args), kwargs

    def call(
        self,
        model: Callable[..., Any],
        inputs: Sequence[Any] | None = None,
        extras: Sequence[Any] | None = None,
        *,
        raw: bool = False,
    ) -> Any:
        """Call ``model`` on this batch (inputs/extras replaced when given); return its class
        scores, or its raw output with ``raw=True``."""
        args, kwargs = self.arguments(inputs, extras)
        out = model(*args, **kwargs)
        return out if raw else self._read(out)

    def forward_func(self, model: Callable[..., Any]) -> Callable[..., Any]:
        """A function ``f(*inputs, *extras) -> scores`` for captum (``additional_forward_args``
        are :attr:`extras`)."""
        k = len(self.inputs)

        def forward(*args: Any) -> Any:
            return self.call(model, args[:k], args[k:])

        return forward

    @property
    def additional_forward_args(self) -> tuple[Any, ...] | None:
        """:attr:`extras` for captum, or ``None`` when there are none."""
        return self.extras or None

    def read_output(self, out: Any) -> Any:
        """Class scores from a raw model output, as the adapter's ``output=`` says."""
        return self._read(out)


# ---------------------------------------------------------------------------- the adapter
class BatchAdapter:
    """How to read a batch and call the model: the one place that knows the user's layout.

    Args:
        inputs: what is explained: an index (tuples/lists) or key (dicts), a tuple of them for
            several inputs, or a callable ``batch -> tensor | tuple of tensors`` (also given as a
            dotted import path). ``None`` infers it: the tensor itself, ``batch[0]``, or the
            first of :data:`INPUT_KEYS` in a dict.
        labels: an index, a key, a callable ``batch -> tensor``, or ``None`` for no labels.
            ``"auto"`` infers it: ``batch[1]`` of a pair; for longer tuples ``batch[1]`` when it
            looks like labels (one value per example), else the last entry when that does; the
            first of :data:`LABEL_KEYS` in a dict; none for a bare tensor.
        forward_kwargs: batch entries passed to the model but not explained: a sequence of keys
            (dict batches; each passed by its own name), of indices (tuple batches; passed
            positionally, in batch order, after... among the inputs), or a mapping from argument
            name to index or key (``{"lengths": 1}``). ``"auto"`` passes the dict keys that name
            parameters of the forward, and for tuples the unused tensors that fill the forward's
            next parameters (required ones, or ones defaulting to ``None``). ``None`` passes
            nothing else.
        output: how to read class scores from the model's output: an index, a key or attribute
            name such as ``"logits"``, or a callable (e.g. picking the last position of an
            ``(N, T, V)`` output). ``None``: a tensor as is, the first element of a tuple, or the
            first of :data:`OUTPUT_KEYS` of a dict or ``ModelOutput``.

    Example:
        >>> model = nn.Linear(4, 3)
        >>> adapter = BatchAdapter()
        >>> b = adapter.split((torch.rand(2, 4), torch.tensor([0, 2])), model)
        >>> len(b.inputs), b.labels.tolist(), b.call(model).shape
        (1, [0, 2], torch.Size([2, 3]))

        A HuggingFace-style dict batch and a forward with an attention mask:

        >>> class Text(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.emb = nn.Embedding(10, 4)
        ...     def forward(self, input_ids, attention_mask=None):
        ...         h = self.emb(input_ids) * attention_mask[..., None]
        ...         return {"logits": h.sum(1)[:, :2]}
        >>> batch = {"input_ids": torch.tensor([[1, 2, 0]]), "attention_mask": torch.tensor([[1, 1, 0]]),
        ...          "labels": torch.tensor([1])}
        >>> b = BatchAdapter().split(batch, Text())
        >>> b.arguments()[1].keys(), b.call(Text()).shape
        (dict_keys(['input_ids', 'attention_mask']), torch.Size([1, 2]))
    """

    def __init__(
        self,
        inputs: InputsLike = None,
        labels: LabelsLike = "auto",
        forward_kwargs: ForwardKwargsLike = "auto",
        output: OutputLike = None,
    ) -> None:
        self.inputs = _check_inputs(resolve_callable(inputs))
        self.labels = _check_key("labels", resolve_callable(labels), allow_auto=True)
        self.forward_kwargs = _check_forward_kwargs(forward_kwargs)
        self.output = _check_key("output", resolve_callable(output), allow_auto=False)

    def __repr__(self) -> str:
        return (
            f"BatchAdapter(inputs={self.inputs!r}, labels={self.labels!r}, "
            f"forward_kwargs={self.forward_kwargs!r}, output={self.output!r})"
        )

    # ------------------------------------------------------------------ public API
    @property
    def single(self) -> bool:
        """Whether one input is explained (results are a tensor rather than a tuple)."""
        return not isinstance(self.inputs, (tuple, list))

    def split(self, batch: Any, model: Callable[..., Any] | None = None) -> AdaptedBatch:
        """Split ``batch`` into explained inputs, other model arguments and labels.

        Args:
            batch: a batch as the dataloader yields it (collated).
            model: the module (or function) that will be called; its signature decides which
                further batch entries it receives. ``None`` passes only the inputs and explicit
                ``forward_kwargs``.

        Raises:
            ValueError: naming the option, the batch's layout and the fix.
        """
        sig = _signature(model) if model is not None else None
        if isinstance(batch, Tensor):
            return self._split_tensor(batch)
        if isinstance(batch, Mapping):
            return self._split_mapping(batch, sig)
        if isinstance(batch, (tuple, list)):
            return self._split_sequence(batch, sig)
        raise ValueError(
            f"A batch must be a tensor, a tuple/list or a dict, got {type(batch).__name__}; "
            "convert it in the DataLoader's collate_fn, or describe it with "
            "BatchAdapter(inputs=<callable>, labels=<callable>)."
        )

    def labels_of(self, batch: Any) -> Tensor | None:
        """Only the labels of ``batch`` (``None`` when the adapter has none)."""
        return self.split(batch).labels

    def call(self, model: Callable[..., Any], batch: Any) -> Any:
        """The class scores of ``model`` on ``batch``."""
        return self.split(batch, model).call(model)

    def read_output(self, out: Any) -> Any:
        """Class scores from a raw model output, as ``output=`` says."""
        return self._read(out)

    # ------------------------------------------------------------------ splitting
    def _split_tensor(self, batch: Tensor) -> AdaptedBatch:
        if callable(self.inputs):
            return self._from_callables(batch, slots=[], extras=[])
        if self.inputs is not None:
            raise ValueError(
                f"`inputs={self.inputs!r}` selects from a tuple or dict, but the batch is a "
                f"single tensor {tuple(batch.shape)}; use inputs=None."
            )
        labels = self._callable_labels(batch)
        if self.labels not in ("auto", None) and not callable(self.labels):
            raise ValueError(
                f"`labels={self.labels!r}` selects from a tuple or dict, but the batch is a "
                f"single tensor {tuple(batch.shape)}; use labels=None, or a batch (x, y)."
            )
        if isinstance(self.forward_kwargs, Mapping) and self.forward_kwargs:
            raise ValueError(
                f"`forward_kwargs={dict(self.forward_kwargs)!r}` selects from a tuple or dict, "
                "but the batch is a single tensor; use forward_kwargs=None."
            )
        return self._make((batch,), (), labels, (("input", 0, None),))

    def _split_sequence(self, batch: Sequence[Any], sig: _Signature | None) -> AdaptedBatch:
        n = len(batch)
        if n == 0:
            raise ValueError("The batch is an empty tuple/list; it needs at least the inputs.")
        if callable(self.inputs):
            return self._from_callables(batch, slots=[], extras=[], sig=sig)
        keys = self._input_keys(default=0)
        for key in keys:
            self._check_index(key, batch, "inputs")
        label_key = self.labels
        if label_key == "auto":
            label_key = self._auto_label_index(batch, keys)
        labels = self._callable_labels(batch)
        if isinstance(label_key, int):
            self._check_index(label_key, batch, "labels")
            labels = batch[label_key]
        elif isinstance(label_key, str):
            raise ValueError(
                f"`labels={label_key!r}` is a key, but the batch is a {_describe(batch)}; use "
                "an index such as labels=1."
            )
        used = set(keys) | ({label_key} if isinstance(label_key, int) else set())
        positional: list[int] = list(keys)
        keyword: dict[str, int] = {}
        fk = self.forward_kwargs
        if fk == "auto":
            positional += self._auto_positional(batch, keys, used, sig)
        elif isinstance(fk, Mapping):
            for name, key in fk.items():
                if not isinstance(key, int):
                    raise ValueError(
                        f"`forward_kwargs={dict(fk)!r}` maps {name!r} to the key {key!r}, but the "
                        f"batch is a {_describe(batch)}; map it to an index, e.g. {{{name!r}: 1}}."
                    )
                self._check_index(key, batch, "forward_kwargs")
                keyword[name] = key
        elif fk is not None:
            for key in fk:
                if not isinstance(key, int):
                    raise ValueError(
                        f"`forward_kwargs` lists the key {key!r}, but the batch is a "
                        f"{_describe(batch)}; give indices, or a mapping {{'name': index}}."
                    )
                self._check_index(key, batch, "forward_kwargs")
                positional.append(key)
        inputs = tuple(batch[k] for k in keys)
        slots: list[tuple[str, int, str | None]] = []
        extras: list[Any] = []
        for key in sorted(set(positional)):
            if key in keys:
                slots.append(("input", keys.index(key), None))
            else:
                slots.append(("extra", len(extras), None))
                extras.append(batch[key])
        for name, key in keyword.items():
            slots.append(("extra", len(extras), name))
            extras.append(batch[key])
        return self._make(inputs, tuple(extras), labels, tuple(slots))

    def _split_mapping(self, batch: Mapping[str, Any], sig: _Signature | None) -> AdaptedBatch:
        if callable(self.inputs):
            extras, slots = self._mapping_extras(batch, [], sig)
            return self._from_callables(batch, slots=slots, extras=extras, sig=sig)
        if self.inputs is None:
            found = next((k for k in INPUT_KEYS if k in batch), None)
            if found is None:
                raise ValueError(
                    f"Cannot tell which entry of the batch to explain ({_describe(batch)}); none "
                    f"of the usual keys {INPUT_KEYS} is present. Name it: "
                    "BatchAdapter(inputs='<key>')."
                )
            keys: list[Key] = [found]
        else:
            keys = self._input_keys(default=None)
        for key in keys:
            if key not in batch:
                raise ValueError(
                    f"`inputs` names the key {key!r}, which the batch lacks ({_describe(batch)}); "
                    "use one of its keys."
                )
        label_key = self.labels
        if label_key == "auto":
            label_key = next((k for k in LABEL_KEYS if k in batch), None)
        labels = self._callable_labels(batch)
        if isinstance(label_key, str):
            if label_key not in batch:
                raise ValueError(
                    f"`labels={label_key!r}` is not a key of the batch ({_describe(batch)}); use "
                    "one of its keys, or labels=None."
                )
            labels = batch[label_key]
        elif isinstance(label_key, int):
            raise ValueError(
                f"`labels={label_key!r}` is an index, but the batch is a dict "
                f"({_describe(batch)}); name its key, e.g. labels='labels'."
            )
        slots: list[tuple[str, int, str | None]] = []
        explained_by_name = sig is not None
        for i, key in enumerate(keys):
            by_name = explained_by_name and isinstance(key, str) and key in sig.keywords  # type: ignore[union-attr]
            slots.append(("input", i, key if by_name else None))
        # positional inputs first, then keywords
        slots.sort(key=lambda s: s[2] is not None)
        skip = set(keys) | ({label_key} if isinstance(label_key, str) else set())
        extras, extra_slots = self._mapping_extras(batch, skip, sig)
        inputs = tuple(batch[k] for k in keys)
        return self._make(inputs, tuple(extras), labels, tuple(slots + extra_slots))

    def _mapping_extras(
        self, batch: Mapping[str, Any], skip: Any, sig: _Signature | None
    ) -> tuple[list[Any], list[tuple[str, int, str | None]]]:
        fk = self.forward_kwargs
        names: dict[str, str] = {}
        if fk == "auto":
            if sig is not None:
                names = {
                    k: k
                    for k in batch
                    if isinstance(k, str)
                    and k in sig.keywords
                    and k not in skip
                    and k not in LABEL_KEYS
                }
        elif isinstance(fk, Mapping):
            names = {name: key for name, key in fk.items()}  # type: ignore[misc]
        elif fk is not None:
            names = {str(k): k for k in fk}  # type: ignore[misc]
        extras, slots = [], []
        for name, key in names.items():
            if key not in batch:
                raise ValueError(
                    f"`forward_kwargs` names the key {key!r}, which the batch lacks "
                    f"({_describe(batch)}); use one of its keys."
                )
            slots.append(("extra", len(extras), name))
            extras.append(batch[key])
        return extras, slots

    def _from_callables(
        self,
        batch: Any,
        slots: list[tuple[str, int, str | None]],
        extras: list[Any],
        sig: _Signature | None = None,
    ) -> AdaptedBatch:
        got = self.inputs(batch)  # type: ignore[operator]
        inputs = tuple(got) if isinstance(got, (tuple, list)) else (got,)
        if not inputs or not all(isinstance(t, Tensor) for t in inputs):
            raise ValueError(
                f"`inputs={self.inputs!r}` must return a tensor or a tuple of tensors, got "
                f"{_describe(got)}."
            )
        labels = self._callable_labels(batch)
        if isinstance(self.labels, (int, str)) and self.labels != "auto":
            try:
                labels = batch[self.labels]
            except (KeyError, IndexError, TypeError) as err:
                raise ValueError(
                    f"`labels={self.labels!r}` is not in the batch ({_describe(batch)}): {err}."
                ) from None
        elif self.labels == "auto":
            labels = None
            if isinstance(batch, Mapping):
                key = next((k for k in LABEL_KEYS if k in batch), None)
                labels = batch[key] if key is not None else None
            elif isinstance(batch, (tuple, list)) and len(batch) > 1:
                labels = batch[1]
        if isinstance(batch, (tuple, list)) and isinstance(self.forward_kwargs, Mapping):
            for name, key in self.forward_kwargs.items():
                slots.append(("extra", len(extras), name))
                extras.append(batch[key])  # type: ignore[index]
        in_slots = [("input", i, None) for i in range(len(inputs))]
        return self._make(inputs, tuple(extras), labels, tuple(in_slots + slots))

    def _make(
        self,
        inputs: tuple[Tensor, ...],
        extras: tuple[Any, ...],
        labels: Any,
        slots: tuple[tuple[str, int, str | None], ...],
    ) -> AdaptedBatch:
        for i, t in enumerate(inputs):
            if not isinstance(t, Tensor):
                raise ValueError(
                    f"Explained input {i} (`inputs={self.inputs!r}`) is a "
                    f"{type(t).__name__}, not a tensor; point `inputs=` at tensors."
                )
        if labels is not None and not isinstance(labels, Tensor):
            raise ValueError(
                f"The labels (`labels={self.labels!r}`) are a {type(labels).__name__}, not a "
                "tensor; point `labels=` at a tensor, or use labels=None."
            )
        return AdaptedBatch(inputs, extras, labels, self.single, slots, self._read)

    # ------------------------------------------------------------------ helpers
    def _input_keys(self, default: Key | None) -> list[Key]:
        if self.inputs is None:
            return [default] if default is not None else []
        if isinstance(self.inputs, (tuple, list)):
            return list(self.inputs)
        return [self.inputs]  # type: ignore[list-item]

    def _callable_labels(self, batch: Any) -> Tensor | None:
        if callable(self.labels):
            return self.labels(batch)
        return None

    def _check_index(self, key: Any, batch: Sequence[Any], option: str) -> None:
        if not isinstance(key, int) or isinstance(key, bool):
            raise ValueError(
                f"`{option}` names the key {key!r}, but the batch is a {_describe(batch)}; use "
                "an index."
            )
        if not -len(batch) <= key < len(batch):
            raise ValueError(
                f"`{option}` uses index {key}, but the batch is a {_describe(batch)}; use an "
                f"index below {len(batch)}."
            )

    @staticmethod
    def _auto_label_index(batch: Sequence[Any], keys: list[Key]) -> int | None:
        n = len(batch)
        candidates = [i for i in range(n) if i not in keys and i - n not in keys]
        if not candidates:
            return None
        if n == 2:
            return candidates[0]
        if 1 in candidates and _looks_like_labels(batch[1]):
            return 1
        if n - 1 in candidates and _looks_like_labels(batch[n - 1]):
            return n - 1
        return 1 if 1 in candidates else None

    @staticmethod
    def _auto_positional(
        batch: Sequence[Any], keys: list[Key], used: set[Any], sig: _Signature | None
    ) -> list[int]:
        """Batch entries for the forward's parameters after the explained inputs: unused
        tensors for parameters that are required or default to ``None``; a parameter that is
        required and still unfilled also takes the labels (``forward(inputs, target)``)."""
        if sig is None:
            return []
        unused = [i for i in range(len(batch)) if i not in used and isinstance(batch[i], Tensor)]
        labels = [i for i in sorted(used - set(keys)) if isinstance(i, int)]
        chosen: list[int] = []
        for slot in range(len(keys), len(sig.names)):
            if not sig.fillable[slot]:
                break
            if unused:
                chosen.append(unused.pop(0))
            elif labels and sig.required[slot]:
                chosen.append(labels.pop(0))
            else:
                break
        return chosen

    def _read(self, out: Any) -> Any:
        spec = self.output
        if callable(spec):
            return spec(out)
        if isinstance(spec, int):
            return out[spec]
        if isinstance(spec, str):
            if isinstance(out, Mapping) and spec in out:
                return out[spec]
            if hasattr(out, spec):
                return getattr(out, spec)
            raise ValueError(
                f"`output={spec!r}` is neither a key nor an attribute of the model output "
                f"({_describe(out) if isinstance(out, (Mapping, tuple, list)) else type(out).__name__})."
            )
        if isinstance(out, Tensor):
            return out
        if isinstance(out, Mapping):
            for key in OUTPUT_KEYS:
                if key in out and out[key] is not None:
                    return out[key]
            raise ValueError(
                f"The model returned a {_describe(out)}, with none of the keys {OUTPUT_KEYS}; "
                "say where the class scores are: BatchAdapter(output='<key>')."
            )
        if isinstance(out, (tuple, list)) and out:
            return out[0]
        for key in OUTPUT_KEYS:
            if isinstance(getattr(out, key, None), Tensor):
                return getattr(out, key)
        raise ValueError(
            f"Cannot read class scores from a model output of type {type(out).__name__}; "
            "set BatchAdapter(output=<index, key, attribute or callable>)."
        )


def _check_inputs(inputs: Any) -> Any:
    if inputs is None or callable(inputs):
        return inputs
    if isinstance(inputs, bool):
        raise TypeError(
            f"`inputs` must be an index, a key, a tuple of them or a callable, got {inputs!r}."
        )
    if isinstance(inputs, (int, str)):
        return inputs
    if (
        isinstance(inputs, Sequence)
        and inputs
        and all(isinstance(k, (int, str)) and not isinstance(k, bool) for k in inputs)
    ):
        if len(set(inputs)) != len(inputs):
            raise ValueError(f"`inputs={inputs!r}` names an entry twice; list each input once.")
        return tuple(inputs)
    raise TypeError(
        f"`inputs` must be None, an index, a key, a non-empty tuple of indices or keys, or a "
        f"callable (or its dotted import path), got {inputs!r}."
    )


def _check_key(option: str, value: Any, *, allow_auto: bool) -> Any:
    if value is None or callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        extra = ", 'auto'" if allow_auto else ""
        raise TypeError(
            f"`{option}` must be None{extra}, an index, a key or a callable (or its dotted "
            f"import path), got {value!r}."
        )
    return value


def _check_forward_kwargs(value: Any) -> Any:
    if value is None or value == "auto":
        return value
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping):
        for name, key in value.items():
            if (
                not isinstance(name, str)
                or isinstance(key, bool)
                or not isinstance(key, (int, str))
            ):
                raise TypeError(
                    f"`forward_kwargs` must map argument names to batch indices or keys, got "
                    f"{dict(value)!r}; e.g. {{'lengths': 1}}."
                )
        return dict(value)
    if isinstance(value, Sequence) and all(
        isinstance(k, (int, str)) and not isinstance(k, bool) for k in value
    ):
        return tuple(value)
    raise TypeError(
        f"`forward_kwargs` must be 'auto', None, a sequence of keys or indices, or a mapping "
        f"from argument name to index or key, got {value!r}."
    )
