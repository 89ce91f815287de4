"""Label-free attribution: explain a representation without choosing a latent dimension.

For an encoder :math:`f` and an example :math:`x_0` the explained scalar is

.. math::

    g_{x_0}(x) = \\langle f(x), f(x_0) \\rangle,

with :math:`f(x_0)` held constant (detached). Any attribution method applied to :math:`g_{x_0}`
at :math:`x = x_0` gives label-free feature importance.

Methods expand the batch before calling the model (integrated gradients tiles the inputs once
per step; GradientShap and NoiseTunnel use ``repeat_interleave``; DeepLift appends the baselines;
perturbation methods tile their perturbations), so each expanded copy of :math:`x_n` must meet
*its own* :math:`f(x_n)`. :class:`LabelFreeOutput` receives :math:`f(x_0)` as
``additional_forward_args``, which captum expands exactly like the inputs, so the pairing is
right for every method, every ``internal_batch_size`` and every noise-tunnel setting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn


def latent_leaves(latents: Any) -> tuple[Tensor, ...]:
    """The tensors of a latent: a tensor, or nested tuples/lists/dicts of tensors.

    Example:
        >>> z = (torch.zeros(2, 3), {"b": torch.ones(2, 4, 4)})
        >>> [tuple(t.shape) for t in latent_leaves(z)]
        [(2, 3), (2, 4, 4)]
    """
    if isinstance(latents, Tensor):
        return (latents,)
    if isinstance(latents, Mapping):
        return tuple(t for key in latents for t in latent_leaves(latents[key]))
    if isinstance(latents, Sequence) and not isinstance(latents, str):
        return tuple(t for item in latents for t in latent_leaves(item))
    raise TypeError(
        "The encoder must return a tensor or a (nested) tuple/list/dict of tensors for "
        f"label-free attribution, got {type(latents).__name__}."
    )


class LabelFreeOutput(nn.Module):
    """The scalar :math:`\\langle f(x), f(x_0) \\rangle` per example, ready for any captum method.

    ``forward(x, *references)`` takes the detached representation leaves of the examples being
    explained (from :meth:`references`) as extra arguments; pass them to captum as
    ``additional_forward_args`` so they follow every expansion of the inputs. Latents of any
    shape work: every leaf is flattened and the products are summed.

    Args:
        encoder: the module (or function) computing the representation.
        root: the module holding the encoder's parameters and layers, when ``encoder`` is a
            plain function or a bound method (e.g. ``autoencoder.encode``). Hook-based methods
            and layer look-ups use it.

    Example:
        >>> from captum.attr import IntegratedGradients
        >>> encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh())
        >>> g = LabelFreeOutput(encoder)
        >>> x = torch.rand(5, 4)
        >>> refs = g.references(x)
        >>> attr = IntegratedGradients(g).attribute(x, additional_forward_args=refs)
        >>> attr.shape
        torch.Size([5, 4])
        >>> torch.allclose(attr.sum(1), g(x, *refs) - g(torch.zeros_like(x), *refs), atol=1e-3)
        True
    """

    def __init__(
        self, encoder: nn.Module | Callable[..., Any], root: nn.Module | None = None
    ) -> None:
        super().__init__()
        if root is None:
            if not isinstance(encoder, nn.Module):
                raise TypeError(
                    "`encoder` is not an nn.Module: pass `root=`, the module that holds its "
                    "parameters (e.g. LabelFreeOutput(autoencoder.encode, root=autoencoder))."
                )
            root = encoder
        self.root = root
        self._encoder = encoder

    def encode(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """The representation leaves of ``inputs``, with gradients."""
        return latent_leaves(self._encoder(inputs))

    @torch.no_grad()
    def references(self, inputs: Tensor) -> tuple[Tensor, ...]:
        """Detached representation leaves :math:`f(x_0)` of the examples to explain."""
        return tuple(t.detach() for t in self.encode(inputs))

    def forward(self, inputs: Tensor, *references: Tensor) -> Tensor:
        latents = self.encode(inputs)
        if len(references) != len(latents):
            raise ValueError(
                f"Label-free attribution got {len(references)} reference tensors for a "
                f"representation with {len(latents)}; pass `references(x)` as "
                "additional_forward_args."
            )
        total: Tensor | None = None
        for latent, ref in zip(latents, references):
            if latent.shape != ref.shape:
                raise ValueError(
                    f"A representation of shape {tuple(latent.shape)} met a reference of shape "
                    f"{tuple(ref.shape)}: the references were not expanded with the inputs. "
                    "Pass them as captum's `additional_forward_args`."
                )
            dot = (latent * ref).reshape(len(latent), -1).sum(1)
            total = dot if total is None else total + dot
        if total is None:
            raise ValueError("The encoder returned no tensor to explain.")
        return total
