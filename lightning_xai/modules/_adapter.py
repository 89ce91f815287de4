"""How the LightningModules take a :class:`~lightning_xai.utilities.BatchAdapter` as a
hyperparameter: an adapter, a mapping of its arguments (from YAML), or ``None`` for the default;
saved in ``hparams`` as that mapping when it can be written down (indices, keys, dotted import
paths), so ``load_from_checkpoint`` rebuilds it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from lightning_xai.utilities.batches import BatchAdapter, check_labels, resolve_callable

AdapterLike = BatchAdapter | Mapping[str, Any] | None

_FIELDS = ("inputs", "labels", "forward_kwargs", "output")
_DEFAULT = {"inputs": None, "labels": "auto", "forward_kwargs": "auto", "output": None}


def make_adapter(adapter: AdapterLike) -> BatchAdapter:
    """A :class:`BatchAdapter` from ``adapter`` (an adapter, its arguments, or ``None``)."""
    if adapter is None:
        return BatchAdapter()
    if isinstance(adapter, BatchAdapter):
        return adapter
    if isinstance(adapter, Mapping):
        unknown = sorted(set(adapter) - set(_FIELDS))
        if unknown:
            raise ValueError(
                f"`adapter` names unknown arguments {unknown}; a BatchAdapter takes {_FIELDS}."
            )
        return BatchAdapter(**adapter)
    raise TypeError(
        f"`adapter` must be a BatchAdapter, a mapping of its arguments or None, got "
        f"{type(adapter).__name__}."
    )


def _plain(value: Any) -> tuple[bool, Any]:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, (tuple, list)):
        parts = [_plain(v) for v in value]
        return all(ok for ok, _ in parts), [v for _, v in parts]
    if isinstance(value, Mapping):
        parts = {k: _plain(v) for k, v in value.items()}
        return all(ok for ok, _ in parts.values()), {k: v for k, (_, v) in parts.items()}
    if callable(value):
        path = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
        if "<" not in path and resolve_callable(path) is value:
            return True, path
    return False, None


def attach_adapter(module: Any, adapter: AdapterLike) -> BatchAdapter:
    """Build the adapter and record it in ``module.hparams["adapter"]`` (``None`` for the
    default; call after ``save_hyperparameters(ignore=[..., "adapter"])``). An adapter holding
    a callable that no import path names (a lambda) is not recorded, with a warning: pass it
    again to ``load_from_checkpoint``."""
    built = make_adapter(adapter)
    spec: dict[str, Any] = {}
    for field in _FIELDS:
        ok, value = _plain(getattr(built, field))
        if not ok:
            warnings.warn(
                f"{type(module).__name__}: the adapter's `{field}` "
                f"({getattr(built, field)!r}) cannot be saved with the hyperparameters; pass "
                "`adapter=` again to `load_from_checkpoint`, or use an index, a key or a "
                "module-level function (saved by its import path).",
                stacklevel=3,
            )
            return built
        spec[field] = value
    module.hparams["adapter"] = None if spec == _DEFAULT else spec
    return built


def without_labels(adapter: BatchAdapter) -> BatchAdapter:
    """``adapter`` reading no labels (for batches that may lack them: prediction, autoencoders)."""
    if adapter.labels is None:
        return adapter
    return BatchAdapter(
        inputs=adapter.inputs,
        labels=None,
        forward_kwargs=adapter.forward_kwargs,
        output=adapter.output,
    )


def single_input(adapter: BatchAdapter, batch: Any, owner: str) -> Any:
    """The one explained input of ``batch`` (labels, present or not, are not read)."""
    inputs = without_labels(adapter).split(batch).inputs
    if len(inputs) != 1:
        raise ValueError(
            f"{owner} reads one input per batch, but the adapter explains {len(inputs)}; choose "
            "one with `adapter=BatchAdapter(inputs=<index or key>)`."
        )
    return inputs[0]


def labelled_batch(module: Any, batch: Any) -> tuple[Any, Any]:
    """``(scores, labels)`` of ``module`` on ``batch``, read by ``module.adapter``; the labels
    are checked against the scores on the first batch (``module._labels_checked``)."""
    split = module.adapter.split(batch, module)
    scores = split.call(module)
    if split.labels is None:
        raise ValueError(
            f"{type(module).__name__} trains on labels, but its adapter found none in the batch; "
            "point `adapter=BatchAdapter(labels=<index or key>)` at them."
        )
    if not getattr(module, "_labels_checked", True):
        check_labels(split.labels, scores, source="the batch's labels")
        module._labels_checked = True
    return scores, split.labels
