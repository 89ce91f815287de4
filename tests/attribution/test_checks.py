from __future__ import annotations

import torch

from lightning_xai.attribution import find_hook_hazards
from lightning_xai.nn import DigitsCNN
from tests.attribution.models import FunctionalMLP, ModuleMLP, ReusedMLP


def test_module_activations_are_safe() -> None:
    assert not find_hook_hazards(ModuleMLP(), torch.zeros(1, 6))
    assert not find_hook_hazards(DigitsCNN(), torch.zeros(1, 1, 8, 8))


def test_functional_activations_are_counted() -> None:
    hazards = find_hook_hazards(FunctionalMLP(), torch.zeros(1, 6))
    assert hazards.functional == {"relu": 2} and hazards.reused == []
    assert "relu x2" in hazards.describe()


def test_reused_modules_are_named() -> None:
    hazards = find_hook_hazards(ReusedMLP(), torch.zeros(1, 6))
    assert hazards.reused == ["act1"] and hazards.functional == {}


def test_relu_only_ignores_other_functional_non_linearities() -> None:
    class SigmoidHead(ModuleMLP):
        def forward(self, x):
            return torch.sigmoid(super().forward(x))

    assert find_hook_hazards(SigmoidHead(), torch.zeros(1, 6)).functional == {"sigmoid": 1}
    assert not find_hook_hazards(SigmoidHead(), torch.zeros(1, 6), relu_only=True)


def test_hooks_are_removed() -> None:
    model = ModuleMLP()
    find_hook_hazards(model, torch.zeros(1, 6))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
