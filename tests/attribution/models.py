"""Small models with known attribution behaviour, shared by the attribution tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ModuleMLP(nn.Module):
    """Linear/ReLU layers, every ReLU its own module: hook-based methods see everything."""

    def __init__(self, in_features: int = 6, hidden: int = 8, out_features: int = 3) -> None:
        super().__init__()
        self.fc1, self.act1 = nn.Linear(in_features, hidden), nn.ReLU()
        self.fc2, self.act2 = nn.Linear(hidden, hidden), nn.ReLU()
        self.fc3 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


class FunctionalMLP(ModuleMLP):
    """The same network calling ``F.relu``: DeepLift and GuidedBackprop miss the activations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class ReusedMLP(ModuleMLP):
    """The same network using one ``nn.ReLU`` twice: DeepLift cannot run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act1(self.fc2(self.act1(self.fc1(x)))))


def twin(cls: type[ModuleMLP], reference: ModuleMLP) -> ModuleMLP:
    """A ``cls`` network with the weights of ``reference``."""
    model = cls()
    model.load_state_dict(reference.state_dict())
    return model.eval()
