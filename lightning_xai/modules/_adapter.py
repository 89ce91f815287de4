"""How the LightningModules take a :class:`~lightning_xai.utilities.BatchAdapter` as a
hyperparameter: an adapter, a mapping of its arguments (from YAML), or ``None`` for the default;
saved in ``hparams`` as that mapping when it can be written down (indices, keys, dotted import
paths), so ``load_from_checkpoint`` rebuilds it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lightning_xai.utilities.batches import BatchAdapter, check_labels, resolve_callable
from lightning_xai.utilities.tensor_checks import check_finite_rows

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


def check_batch_inputs(owner: str, inputs: tuple[Any, ...]) -> None:
    """Refuse an empty batch, or explained floating-point inputs holding NaN or inf, before a
    step computes anything (a NaN would otherwise turn into a NaN loss, or a prediction of
    class 0, without a word)."""
    for index, value in enumerate(inputs):
        if not isinstance(value, Tensor):
            continue
        name = "batch" if len(inputs) == 1 else f"batch input {index}"
        if value.dim() > 0 and value.shape[0] == 0:
            raise ValueError(
                f"{owner}: the `{name}` is empty (shape {tuple(value.shape)}); drop empty "
                "batches in the dataset or the DataLoader's collate_fn."
            )
        check_finite_rows(
            name,
            value.detach(),
            f"{owner} cannot learn from or predict on them: drop or repair those examples in "
            "the dataset (or filter them in the DataLoader's collate_fn).",
        )


def single_input(adapter: BatchAdapter, batch: Any, owner: str) -> Any:
    """The one explained input of ``batch`` (labels, present or not, are not read), checked by
    :func:`check_batch_inputs`."""
    inputs = without_labels(adapter).split(batch).inputs
    if len(inputs) != 1:
        raise ValueError(
            f"{owner} reads one input per batch, but the adapter explains {len(inputs)}; choose "
            "one with `adapter=BatchAdapter(inputs=<index or key>)`."
        )
    check_batch_inputs(owner, inputs)
    return inputs[0]


def unlabelled_scores(module: Any, batch: Any) -> Any:
    """The class scores of ``module`` on ``batch`` (labels not read), inputs checked first."""
    split = without_labels(module.adapter).split(batch, module)
    check_batch_inputs(type(module).__name__, split.inputs)
    return split.call(module)


def labelled_batch(module: Any, batch: Any) -> tuple[Any, Any]:
    """``(scores, labels)`` of ``module`` on ``batch``, read by ``module.adapter``.

    Every batch is checked before the loss sees it: the inputs by :func:`check_batch_inputs`,
    the labels against the scores (shape, integer class indices in range) by
    :func:`~lightning_xai.utilities.batches.check_labels`, since a label outside the classes in
    any batch, not only the first, is a wrong answer waiting to happen."""
    owner = type(module).__name__
    split = module.adapter.split(batch, module)
    check_batch_inputs(owner, split.inputs)
    if split.labels is None:
        raise ValueError(
            f"{owner} trains on labels, but its adapter found none in the batch; "
            "point `adapter=BatchAdapter(labels=<index or key>)` at them."
        )
    scores = split.call(module)
    check_labels(split.labels, scores, source="the batch's labels")
    if isinstance(split.labels, Tensor) and split.labels.is_floating_point():
        check_finite_rows("the batch's labels", split.labels.detach())
    module._labels_checked = True
    return scores, split.labels
