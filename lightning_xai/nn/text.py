"""A small text classifier over token ids: embedding, pooling over real tokens, MLP."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from lightning_xai.utilities.validation import check_positive_int

__all__ = ["TokenClassifier"]

Pooling = Literal["attention", "mean"]


class TokenClassifier(nn.Module):
    r"""Token ids ``(N, T)`` to class logits: ``nn.Embedding`` (module path ``embedding``),
    pooling over the tokens the attention mask keeps, then ``Linear``/``ReLU``/``Linear``.

    With ``pooling="attention"`` each token gets a learned score :math:`s_t = w^\top e_t + b`
    and the pooled vector is :math:`\sum_t \operatorname{softmax}(s)_t\, e_t` over the kept
    tokens, so the model can give a token (and the gradient at its embedding) almost no weight;
    ``"mean"`` averages the kept tokens' embeddings. Padding positions never contribute.
    Explain it with a layer method on ``embedding``
    (``LayerIntegratedGradients``) or penalise it with
    ``right_reasons_penalty(..., layer="embedding")``.

    Args:
        vocab_size: number of token ids.
        embedding_dim: width of the embeddings.
        num_classes: number of logits.
        hidden: width of the hidden layer of the MLP head.
        pooling: ``"attention"`` or ``"mean"``.
        padding_idx: the padding token id, whose embedding stays zero (``None``: no padding
            token). Zero embeddings make it the natural integrated-gradients baseline.

    Example:
        >>> model = TokenClassifier(vocab_size=10, num_classes=3)
        >>> ids = torch.tensor([[4, 5, 6], [7, 8, 0]])
        >>> model(ids, attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]])).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 16,
        num_classes: int = 2,
        hidden: int = 32,
        pooling: Pooling = "attention",
        padding_idx: int | None = 0,
    ) -> None:
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("hidden", hidden)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
        if pooling not in get_args(Pooling):
            raise ValueError(
                f"`pooling` must be one of {list(get_args(Pooling))}, got {pooling!r}."
            )
        if padding_idx is not None and not 0 <= padding_idx < vocab_size:
            raise ValueError(
                f"`padding_idx` must be a token id in [0, {vocab_size - 1}] or None, got "
                f"{padding_idx!r}."
            )
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.attention = nn.Linear(embedding_dim, 1) if pooling == "attention" else None
        self.classifier = nn.Sequential(
            nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if input_ids.dim() != 2 or input_ids.is_floating_point():
            raise ValueError(
                f"`input_ids` must be integer token ids of shape (N, T), got "
                f"{tuple(input_ids.shape)} {input_ids.dtype}."
            )
        h = self.embedding(input_ids)  # (N, T, E)
        if attention_mask is None:
            keep = torch.ones(input_ids.shape, dtype=torch.bool, device=input_ids.device)
        else:
            keep = attention_mask.to(device=input_ids.device).bool()
        if self.attention is not None:
            scores = self.attention(h).squeeze(-1)
            scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, dim=-1) * keep
        else:
            weights = keep.to(h.dtype) / keep.sum(dim=1, keepdim=True).clamp_min(1)
        pooled = (weights.unsqueeze(-1) * h).sum(dim=1)
        return self.classifier(pooled)
