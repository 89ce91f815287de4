"""One way to put a model in eval mode and give every submodule its own mode back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: nn.Module | None) -> Iterator[nn.Module | None]:
    """Put ``model`` in eval mode; on exit restore each submodule's own train/eval flag.

    A plain ``model.train(was_training)`` would also switch submodules the user had put in eval
    mode on purpose (a frozen, batch-norm backbone); this context does not. ``None`` is allowed
    (nothing to switch).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> _ = net[0].eval()  # frozen by the user
        >>> with eval_mode(net):
        ...     net.training, net[1].training
        (False, False)
        >>> net.training, net[0].training, net[1].training
        (True, False, True)
    """
    if model is None:
        yield None
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
