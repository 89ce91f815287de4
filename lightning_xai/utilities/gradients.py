"""The one way explanation code asks for gradients.

Lightning evaluates under ``torch.no_grad`` during ``fit`` and under ``torch.inference_mode`` in
``validate``/``test``. ``torch.enable_grad()`` alone does not leave inference mode, and tensors
created in inference mode (inputs *and* targets) cannot be saved for backward. ``grad_enabled``
handles both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["grad_enabled", "to_autograd"]


def to_autograd(obj: Any) -> Any:
    """Return ``obj`` with every inference-mode tensor cloned into a normal tensor.

    Works recursively on tuples, lists and dicts; other objects pass through unchanged. Must be
    called with inference mode disabled (inside :func:`grad_enabled`).

    Example:
        >>> with torch.inference_mode():
        ...     x = torch.ones(2)
        >>> with grad_enabled():
        ...     y = to_autograd(x)
        >>> x.is_inference(), y.is_inference()
        (True, False)
    """
    if isinstance(obj, torch.Tensor):
        return obj.clone() if obj.is_inference() else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_autograd(o) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_autograd(o) for o in obj)
    if isinstance(obj, dict):
        return {k: to_autograd(v) for k, v in obj.items()}
    return obj


@contextmanager
def grad_enabled(*tensors: Any) -> Iterator[tuple[Any, ...]]:
    """Leave inference mode, enable autograd, and yield ``tensors`` made usable by autograd.

    Args:
        *tensors: tensors (or nested tuples/lists/dicts of tensors) that explanation code will
            differentiate through or combine with differentiable results. Those created under
            inference mode are cloned; the others are yielded unchanged.

    Yields:
        A tuple with one entry per argument.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> with torch.inference_mode():
        ...     x = torch.randn(4, 3)
        ...     with grad_enabled(x) as (x,):
        ...         x = x.requires_grad_(True)
        ...         (g,) = torch.autograd.grad(model(x).sum(), x)
        >>> torch.allclose(g, model.weight.detach().expand(4, 3))
        True
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield tuple(to_autograd(t) for t in tensors)
