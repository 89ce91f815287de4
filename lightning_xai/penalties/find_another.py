""" "Find another explanation": train a sequence of models that rely on different features.

Train a model, mark the features it relies on most, forbid them (together with everything
forbidden before) when training the next model, and repeat.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from lightning_xai.penalties.masks import check_mask, largest_gradient_mask
from lightning_xai.penalties.right_reasons import log_prob_input_gradients
from lightning_xai.utilities.modes import eval_mode
from lightning_xai.utilities.validation import check_positive_int

__all__ = ["find_another_explanation"]


def find_another_explanation(
    model: nn.Module,
    inputs: Tensor,
    previous_mask: Tensor | None = None,
    *,
    cutoff: float = 0.67,
    batch_size: int = 256,
    method: Literal["auto", "batch_sum", "per_sample"] = "auto",
) -> Tensor:
    """Build the next annotation masks from a trained model's largest input gradients.

    Among the features still allowed, those the model relies on most (see
    :func:`largest_gradient_mask`) are added to ``previous_mask`` (a union). Training a new model on the result forbids what this model
    used, so a sequence of models rely on different features ("find another explanation").
    The model is evaluated in eval mode (each submodule's own mode is restored afterwards).

    Args:
        model: a trained classifier returning logits.
        inputs: ``(N, ...)`` training inputs.
        previous_mask: masks used so far (same shape as ``inputs``), or ``None``.
        cutoff: relative gradient threshold passed to :func:`largest_gradient_mask`.
        batch_size: inputs per gradient computation.
        method: how input gradients are taken, see :func:`log_prob_input_gradients`.

    Returns:
        A ``bool`` mask with the inputs' shape.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[5.0, 0.0, 0.0, 0.0], [-5.0, 0.0, 0.1, 0.0]]))
        ...     _ = model.bias.copy_(torch.tensor([2.0, 0.0]))
        >>> x = torch.zeros(3, 4)
        >>> first = find_another_explanation(model, x)
        >>> first[0].tolist()
        [True, False, False, False]
        >>> find_another_explanation(model, x, first)[0].tolist()
        [True, False, True, False]
    """
    check_positive_int("batch_size", batch_size)
    if not 0.0 < cutoff <= 1.0:
        raise ValueError(
            f"`cutoff` must be in (0, 1] (share of each sample's largest gradient), got {cutoff!r}."
        )
    previous = None
    if previous_mask is not None:
        previous = check_mask(previous_mask, inputs, name="previous_mask") > 0
    chunks = []
    with eval_mode(model):
        for chunk in inputs.split(batch_size):
            grads, _ = log_prob_input_gradients(model, chunk, method=method, create_graph=False)
            chunks.append(grads)
    grads = torch.cat(chunks)
    if previous is not None:
        grads = grads.masked_fill(previous, 0.0)
    new = largest_gradient_mask(grads, cutoff)
    return new | previous if previous is not None else new
