"""Find model patterns that make hook-based attribution methods silently wrong or fail.

DeepLift, GuidedBackprop, Deconvolution and GuidedGradCam change gradients with hooks on
activation *modules*. An activation called as a function (``F.relu(x)``, ``x.relu()``) gets no
hook, so its plain gradient is used and the attributions are wrong without any error; an
activation module used twice in one forward pass breaks DeepLift's bookkeeping.
:func:`find_hook_hazards` runs one forward pass and reports both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

# Non-linear modules that captum's DeepLift handles with its own rules.
DEEPLIFT_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softmax,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
)
RELU_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU,)

_DEEPLIFT_FUNCTIONS = frozenset(
    {
        "relu",
        "relu_",
        "elu",
        "elu_",
        "leaky_relu",
        "leaky_relu_",
        "sigmoid",
        "sigmoid_",
        "tanh",
        "tanh_",
        "softmax",
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
    }
)
_RELU_FUNCTIONS = frozenset({"relu", "relu_"})

FIX_HINT = (
    "Fix the model: use nn.ReLU() modules, one per use, i.e. define every activation (and "
    "max-pooling) as its own module (`self.act1 = nn.ReLU()`) instead of calling "
    "`F.relu`/`x.relu()` or reusing one module; or choose a gradient method such as "
    "'integrated_gradients'."
)


@dataclass
class HookHazards:
    """What :func:`find_hook_hazards` found.

    Attributes:
        functional: names of activation functions called outside an activation module, with
            their call counts (e.g. ``{"relu": 2}``).
        reused: module paths of activation modules called more than once per forward pass.
    """

    functional: dict[str, int] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.functional or self.reused)

    def describe(self) -> str:
        """A one-sentence summary, empty when nothing was found."""
        parts = []
        if self.functional:
            calls = ", ".join(f"{name} x{count}" for name, count in sorted(self.functional.items()))
            parts.append(f"functional activations called outside modules ({calls})")
        if self.reused:
            parts.append(f"activation modules used more than once ({', '.join(self.reused)})")
        return "; ".join(parts)


class _FunctionalCalls(TorchFunctionMode):
    def __init__(self, names: Iterable[str], depth: list[int]) -> None:
        super().__init__()
        self.names = frozenset(names)
        self.depth = depth
        self.calls: Counter[str] = Counter()

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        name = getattr(func, "__name__", "")
        if self.depth[0] == 0 and name in self.names:
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def find_hook_hazards(
    model: nn.Module,
    inputs: Tensor | tuple[Any, ...],
    forward: Callable[..., Any] | None = None,
    relu_only: bool = False,
) -> HookHazards:
    """Run one forward pass and report activations that hook-based methods cannot see.

    Args:
        model: the module whose activation modules are inspected.
        inputs: an input batch (one example is enough), or a tuple of forward arguments.
        forward: the function to run (default: ``model``), e.g. a bound ``encode`` method.
        relu_only: look at ReLUs only (GuidedBackprop, Deconvolution) instead of every
            non-linearity DeepLift handles.

    Example:
        >>> import torch.nn.functional as F
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc, self.act = nn.Linear(3, 3), nn.ReLU()
        ...     def forward(self, x):
        ...         return F.relu(self.fc(self.act(self.act(x))))
        >>> hazards = find_hook_hazards(Net(), torch.zeros(1, 3))
        >>> hazards.functional, hazards.reused
        ({'relu': 1}, ['act'])
    """
    module_types = RELU_MODULES if relu_only else DEEPLIFT_MODULES
    names = _RELU_FUNCTIONS if relu_only else _DEEPLIFT_FUNCTIONS
    depth = [0]
    counts: Counter[str] = Counter()
    handles = []

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            depth[0] += 1
            counts[name] += 1

        return hook

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        depth[0] -= 1

    for name, module in model.named_modules():
        if isinstance(module, module_types):
            handles.append(
                module.register_forward_pre_hook(pre_hook(name or type(module).__name__))
            )
            handles.append(module.register_forward_hook(post_hook))
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    fn = forward if forward is not None else model
    mode = _FunctionalCalls(names, depth)
    try:
        with torch.no_grad(), mode:
            fn(*args)
    finally:
        for handle in handles:
            handle.remove()
    return HookHazards(
        functional=dict(mode.calls),
        reused=sorted(name for name, count in counts.items() if count > 1),
    )
