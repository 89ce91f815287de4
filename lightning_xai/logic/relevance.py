"""Per-class concept relevance read from the weights of an explainer network."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from lightning_xai.nn.entropy_linear import entropy_layers

__all__ = ["concept_relevance"]


def concept_relevance(model: nn.Module) -> Tensor:
    r"""Relevance of each input concept for each class, scaled to a per-class maximum of 1.

    * Networks with an :class:`~lightning_xai.nn.EntropyLinear` layer (found anywhere in the
      module tree; the first one is the concept layer) use its normalised relevance
      :math:`\tilde\alpha`.
    * Plain MLPs use the absolute weight paths from inputs to outputs,
      :math:`R = |W_L| \cdots |W_2|\,|W_1|`, an ``(n_classes, n_concepts)`` matrix: an input whose
      weights were driven to zero (e.g. by an L1 penalty) gets zero relevance for every class.

    Returns:
        Tensor of shape ``(n_classes, n_concepts)`` with values in ``[0, 1]``, detached.

    A class whose relevance is zero for every concept (all its weight paths are zero) gets a
    zero row and a warning: its rule cannot be read from the weights.

    Raises:
        ValueError: if the model has neither an entropy layer nor a chain of linear layers, or
            if its weights hold NaN or inf (the relevance would be undefined).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> mlp = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
        >>> with torch.no_grad():
        ...     _ = mlp[0].weight.copy_(torch.tensor([[1.0, 0.0, -2.0], [0.0, 0.0, 1.0]]))
        ...     _ = mlp[2].weight.fill_(1.0)
        >>> concept_relevance(mlp)
        tensor([[0.3333, 0.0000, 1.0000]])
    """
    with torch.no_grad():
        relevance = _relevance(model)
    if not bool(torch.isfinite(relevance).all()):
        bad = sorted({int(k) for k in (~torch.isfinite(relevance)).nonzero()[:, 0]})
        raise ValueError(
            f"The concept relevance of `model` ({type(model).__name__}) holds NaN or inf for "
            f"classes {bad}: its weights are not finite (e.g. a diverged training run); retrain "
            "or load a finite checkpoint before reading rules from it."
        )
    empty = (relevance.amax(dim=1) <= 0).nonzero().flatten().tolist()
    if empty:
        warnings.warn(
            f"In `model` ({type(model).__name__}), class {', '.join(map(str, empty))} has zero "
            "relevance for every concept (its weight paths are all zero, e.g. after a strong L1 "
            "penalty); rules for it cannot be read from the weights. Lower the penalty or "
            "train longer.",
            UserWarning,
            stacklevel=2,
        )
    return relevance


def _relevance(model: nn.Module) -> Tensor:
    """Relevance read from the weights (not yet checked)."""
    layers = entropy_layers(model)
    if layers:
        return layers[0].normalized_relevance().detach().clone()
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(
            f"`model` ({type(model).__name__}) has no EntropyLinear or nn.Linear layer to "
            "read concept relevance from."
        )
    paths = linears[0].weight.abs()
    for layer in linears[1:]:
        if layer.in_features != paths.shape[0]:
            raise ValueError(
                f"The linear layers of `model` ({type(model).__name__}) do not form a chain "
                f"({paths.shape[0]} outputs feed a layer with {layer.in_features} inputs); "
                "concept relevance needs a plain MLP or an EntropyLinear layer."
            )
        paths = layer.weight.abs() @ paths
    top = paths.amax(dim=1, keepdim=True)
    return (paths / torch.where(top > 0, top, torch.ones_like(top))).detach().clone()
