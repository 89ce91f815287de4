"""Entropy-regularised linear layer for logic explainer networks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_xai.utilities.validation import check_finite, check_positive_int

__all__ = ["EntropyLinear", "entropy_layers", "entropy_loss"]


class EntropyLinear(nn.Module):
    r"""Class-wise linear layer whose inputs are scaled by a learned concept relevance.

    The layer keeps one weight matrix :math:`W_k \in \mathbb{R}^{h \times d}` per class
    :math:`k`. The relevance of concept :math:`j` for class :math:`k` is the L1 norm of its
    outgoing weights, turned into a distribution over concepts by a softmax at temperature
    :math:`T`:

    .. math::

        \gamma_{kj} = \sum_{o=1}^{h} |W_{koj}|, \qquad
        \alpha_{kj} = \frac{\exp(\gamma_{kj} / T)}{\sum_{i} \exp(\gamma_{ki} / T)}, \qquad
        \tilde\alpha_{kj} = \frac{\alpha_{kj}}{\max_i \alpha_{ki}}
        = \exp\Big(\frac{\gamma_{kj} - \max_i \gamma_{ki}}{T}\Big).

    The input is scaled by :math:`\tilde\alpha` before the linear map,
    :math:`h_k = (x \odot \tilde\alpha_k) W_k^\top + b_k`, and the entropy
    :math:`H(\alpha) = -\sum_{k,j} \alpha_{kj} \log \alpha_{kj}` is the regulariser that pushes each
    class to rely on few concepts (see :func:`entropy_loss`). Both are computed from shifted
    logits (``softmax``/``log_softmax``), so arbitrarily large weights never overflow.

    Args:
        in_features: number of input concepts :math:`d`.
        out_features: hidden units per class :math:`h`.
        n_classes: number of classes :math:`k`.
        temperature: softmax temperature :math:`T > 0`; lower values give sharper relevance.
        bias: whether to learn a per-class bias.

    Shape:
        input ``(N, in_features)``, output ``(N, n_classes, out_features)``.

    Example:
        >>> import torch
        >>> layer = EntropyLinear(5, 3, n_classes=2)
        >>> layer(torch.rand(4, 5)).shape
        torch.Size([4, 2, 3])
        >>> torch.allclose(layer.relevance().sum(dim=1), torch.ones(2))
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_classes: int,
        temperature: float = 0.6,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("n_classes", n_classes),
        ):
            check_positive_int(name, value)
        try:
            check_finite("temperature", temperature, minimum=0.0, exclusive=True)
        except ValueError as err:
            raise ValueError(f"{err} Typical values are between 0.1 and 1.") from None
        self.in_features = in_features
        self.out_features = out_features
        self.n_classes = n_classes
        self.temperature = float(temperature)
        self.weight = nn.Parameter(torch.empty(n_classes, out_features, in_features))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(n_classes, out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise each class's weights like :class:`torch.nn.Linear` does."""
        bound = 1.0 / math.sqrt(self.in_features)
        # kaiming_uniform_(a=sqrt(5)) on a (out, in) matrix draws from U(-1/sqrt(in), 1/sqrt(in))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _scores(self) -> Tensor:
        return self.weight.abs().sum(dim=1) / self.temperature

    def relevance(self) -> Tensor:
        """Concept relevance :math:`\\alpha`, shape ``(n_classes, in_features)``, rows sum to 1."""
        return torch.softmax(self._scores(), dim=1)

    def normalized_relevance(self) -> Tensor:
        """Relevance divided by its per-class maximum (:math:`\\tilde\\alpha`, in ``(0, 1]``)."""
        scores = self._scores()
        return torch.exp(scores - scores.amax(dim=1, keepdim=True))

    def concept_mask(self, threshold: float = 0.5) -> Tensor:
        """Boolean ``(n_classes, in_features)`` mask of concepts with :math:`\\tilde\\alpha >` threshold."""
        return self.normalized_relevance() > threshold

    def entropy(self) -> Tensor:
        """Entropy of the relevance distributions, summed over classes (a scalar)."""
        log_alpha = torch.log_softmax(self._scores(), dim=1)
        return -(log_alpha.exp() * log_alpha).sum()

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != 2 or input.shape[-1] != self.in_features:
            raise ValueError(
                f"EntropyLinear expects input of shape (N, {self.in_features}), "
                f"got {tuple(input.shape)}."
            )
        scaled = input.unsqueeze(1) * self.normalized_relevance().unsqueeze(0)
        out = torch.einsum("nci,coi->nco", scaled, self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_classes={self.n_classes}, temperature={self.temperature}, "
            f"bias={self.bias is not None}"
        )


def entropy_layers(model: nn.Module) -> list[EntropyLinear]:
    """All :class:`EntropyLinear` layers of ``model``, however deeply nested, in module order.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Sequential(EntropyLinear(4, 2, 1)), nn.Linear(2, 1))
        >>> len(entropy_layers(model))
        1
    """
    return [module for module in model.modules() if isinstance(module, EntropyLinear)]


def entropy_loss(model: nn.Module) -> Tensor:
    """Sum of :meth:`EntropyLinear.entropy` over every entropy layer found in ``model``.

    Raises:
        ValueError: if ``model`` contains no :class:`EntropyLinear` layer (a silent zero would
            train an unregularised network).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Sequential(EntropyLinear(4, 2, n_classes=3)))
        >>> bool(entropy_loss(model) <= 3 * torch.log(torch.tensor(4.0)))
        True
    """
    layers = entropy_layers(model)
    if not layers:
        raise ValueError(
            f"`model` ({type(model).__name__}) contains no EntropyLinear layer; add one as its "
            "input layer or drop the entropy penalty."
        )
    return torch.stack([layer.entropy() for layer in layers]).sum()
