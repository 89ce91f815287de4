"""TokenClassifier: padding never matters, pooling is what it says, bad arguments fail early."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_xai.nn import TokenClassifier


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_padding_does_not_change_the_logits(pooling: str) -> None:
    torch.manual_seed(0)
    model = TokenClassifier(12, 4, 3, 8, pooling=pooling)
    ids = torch.tensor([[3, 4, 5], [6, 7, 0]])
    keep = torch.tensor([[1, 1, 1], [1, 1, 0]])
    padded = F.pad(ids, (0, 2))
    padded[0, 3:] = 9  # garbage after the end, dropped by the attention mask
    logits = model(ids, keep)
    torch.testing.assert_close(model(padded, F.pad(keep, (0, 2))), logits)
    torch.testing.assert_close(model(ids[1:, :2]), logits[1:])


def test_mean_pooling_is_the_mean_of_kept_embeddings() -> None:
    model = TokenClassifier(12, 4, 2, 8, pooling="mean")
    ids, keep = torch.tensor([[3, 4, 5]]), torch.tensor([[1, 0, 1]])
    expected = model.classifier(model.embedding(ids[:, [0, 2]]).mean(1))
    torch.testing.assert_close(model(ids, keep), expected)
    assert model.embedding.weight[0].abs().sum() == 0  # padding embedding is zero


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pooling": "max"}, r"`pooling` must be one of \['attention', 'mean'\], got 'max'"),
        ({"num_classes": 1}, "`num_classes` must be an integer >= 2, got 1"),
        ({"padding_idx": 40}, r"`padding_idx` must be a token id in \[0, 11\]"),
        ({"embedding_dim": 0}, "`embedding_dim` must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenClassifier(12, **kwargs)


def test_float_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"integer token ids of shape \(N, T\)"):
        TokenClassifier(12)(torch.rand(2, 3))
