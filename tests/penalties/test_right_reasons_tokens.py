"""The penalty on token ids (gradient at the embedding), through the BatchAdapter, on dict batches,
HuggingFace models and several inputs, against hand-written references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.data import keyword_sentences
from lightning_xai.nn import TokenClassifier
from lightning_xai.penalties import (
    find_another_explanation,
    log_prob_input_gradients,
    right_reasons_penalty,
)
from lightning_xai.utilities import BatchAdapter
from tests.user_models import HFTextClassifier, TwoInputNet, token_data, two_input_data

VOCAB = 29


def _model(dtype: torch.dtype = torch.float32) -> TokenClassifier:
    torch.manual_seed(0)
    return TokenClassifier(VOCAB, embedding_dim=6, num_classes=2, hidden=8).to(dtype)


def _from_embeddings(model: TokenClassifier, e: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The classifier written out from the embedding output on (reference, no hooks)."""
    scores = model.attention(e).squeeze(-1).masked_fill(~keep, torch.finfo(e.dtype).min)
    weights = torch.softmax(scores, dim=-1) * keep
    return model.classifier((weights.unsqueeze(-1) * e).sum(dim=1))


def _reference_gradients(model: TokenClassifier, batch: dict, create_graph: bool = False):
    e = model.embedding(batch["input_ids"]).detach().requires_grad_(True)
    logits = _from_embeddings(model, e, batch["attention_mask"].bool())
    log_probs = F.log_softmax(logits, dim=-1)
    (g,) = torch.autograd.grad(log_probs.sum(), e, create_graph=create_graph)
    return g, logits


@pytest.mark.parametrize("method", ["batch_sum", "per_sample"])
def test_embedding_gradients_match_the_model_written_out(method: str) -> None:
    model, batch = _model(), keyword_sentences(6, seed=3)
    grads, logits = log_prob_input_gradients(model, batch, layer="embedding", method=method)
    expected, expected_logits = _reference_gradients(model, batch)
    torch.testing.assert_close(grads, expected)
    torch.testing.assert_close(logits, expected_logits)
    pad = batch["attention_mask"] == 0
    assert grads[pad].abs().max() == 0  # padding never reaches the output


def test_token_penalty_is_the_formula_with_the_mask_broadcast_over_the_embedding() -> None:
    model, batch = _model(), keyword_sentences(5, seed=1)
    mask = batch["mask"]
    g, _ = _reference_gradients(model, batch)
    by_hand = ((mask[..., None].float() * g) ** 2).sum(dim=(1, 2))
    out = right_reasons_penalty(model, batch, mask, layer="embedding", reduction="sum")
    torch.testing.assert_close(out.per_sample, by_hand)
    torch.testing.assert_close(out.penalty, by_hand.sum())
    assert out.mask.shape == (5, 12, 1) and out.input_gradients.shape == (5, 12, 6)
    soft = right_reasons_penalty(model, batch, 0.5 * mask.float(), layer=model.embedding)
    torch.testing.assert_close(soft.penalty, 0.25 * by_hand.mean())
    full = right_reasons_penalty(
        model, batch, mask[..., None].expand(-1, -1, 6), layer="embedding", reduction="sum"
    )
    torch.testing.assert_close(full.penalty, out.penalty)


def test_token_penalty_trains_and_a_zero_mask_gives_plain_gradients_exactly() -> None:
    batch = keyword_sentences(8, seed=2)
    y = batch["labels"]

    def parameter_grads(mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        model = _model()
        if mask is None:
            loss = F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), y)
        else:
            out = right_reasons_penalty(model, batch, mask, layer="embedding")
            loss = F.nll_loss(out.log_probs, y) + 100.0 * out.penalty
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = parameter_grads(None)
    zero = parameter_grads(torch.zeros_like(batch["mask"]))
    penalised = parameter_grads(batch["mask"])
    for name, grad in plain.items():
        assert torch.equal(zero[name], grad), name
    for name in ("embedding.weight", "attention.weight", "classifier.0.weight"):
        assert not torch.allclose(penalised[name], plain[name], atol=1e-4), name


def test_token_penalty_gradient_matches_finite_differences() -> None:
    model, batch = _model(torch.float64), keyword_sentences(4, seed=5)
    out = right_reasons_penalty(model, batch, batch["mask"], layer="embedding", reduction="sum")
    weight = model.attention.weight
    (analytic,) = torch.autograd.grad(out.penalty, weight)
    assert analytic.abs().max() > 0
    eps, numeric = 1e-6, torch.zeros_like(weight)
    with torch.no_grad():
        for j in range(weight.shape[1]):
            values = []
            for sign in (1, -1):
                weight[0, j] += sign * eps
                values.append(
                    right_reasons_penalty(
                        model, batch, batch["mask"], layer="embedding", create_graph=False,
                        reduction="sum",
                    ).penalty
                )  # fmt: skip
                weight[0, j] -= sign * eps
            numeric[0, j] = (values[0] - values[1]) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_the_attention_mask_reaches_the_model_through_the_adapter() -> None:
    model, batch = _model(), keyword_sentences(6, seed=4)
    ids, keep = batch["input_ids"], batch["attention_mask"]
    with_mask = right_reasons_penalty(model, batch, batch["mask"], layer="embedding")
    explicit = right_reasons_penalty(
        model,
        (ids, keep, batch["labels"]),
        batch["mask"],
        layer="embedding",
        adapter=BatchAdapter(inputs=0, labels=2, forward_kwargs={"attention_mask": 1}),
    )
    without = right_reasons_penalty(model, ids, batch["mask"], layer="embedding")
    torch.testing.assert_close(explicit.penalty, with_mask.penalty)
    torch.testing.assert_close(with_mask.logits, model(ids, keep))
    assert not torch.allclose(without.logits, with_mask.logits)  # padding counted without it


def test_huggingface_model_output_and_word_embeddings() -> None:
    model = HFTextClassifier(vocab_size=20).eval()
    batch = {k: v[:4] for k, v in token_data(n=4).items()}
    mask = batch["input_ids"] == 3  # the label token must not be used
    out = right_reasons_penalty(
        model, batch, mask, layer="bert.bert.embeddings.word_embeddings", reduction="sum"
    )
    logits = model(batch["input_ids"], batch["attention_mask"]).logits
    torch.testing.assert_close(out.logits, logits)
    # reference: the same forward fed the word embeddings through inputs_embeds
    e = model.bert.bert.embeddings.word_embeddings(batch["input_ids"]).detach()
    e.requires_grad_(True)
    ref = model.bert(inputs_embeds=e, attention_mask=batch["attention_mask"]).logits
    (g,) = torch.autograd.grad(F.log_softmax(ref, -1).sum(), e)
    torch.testing.assert_close(out.input_gradients, g)
    torch.testing.assert_close(out.penalty, ((mask[..., None] * g) ** 2).sum())


def test_several_inputs_take_one_mask_each() -> None:
    torch.manual_seed(0)
    model = TwoInputNet()
    image, features, y = two_input_data(n=5)[:]
    adapter = BatchAdapter(inputs=(0, 1), labels=2)
    image_mask = torch.zeros_like(image, dtype=torch.bool)
    image_mask[..., :3, :] = True
    feature_mask = torch.tensor([True, False, False, True]).expand(5, 4)
    batch = (image, features, y)
    out = right_reasons_penalty(model, batch, (image_mask, feature_mask), adapter=adapter)
    xi, xf = image.clone().requires_grad_(True), features.clone().requires_grad_(True)
    gi, gf = torch.autograd.grad(F.log_softmax(model(xi, xf), -1).sum(), (xi, xf))
    per_sample = (gi * image_mask).square().flatten(1).sum(1) + (gf * feature_mask).square().sum(1)
    torch.testing.assert_close(out.per_sample, per_sample)
    torch.testing.assert_close(out.input_gradients[1], gf)
    only_image = right_reasons_penalty(model, batch, (image_mask, None), adapter=adapter)
    torch.testing.assert_close(only_image.per_sample, (gi * image_mask).square().flatten(1).sum(1))
    with pytest.raises(TypeError, match="tuple of 2 masks, one per explained input"):
        right_reasons_penalty(model, batch, image_mask, adapter=adapter)


def test_token_errors_name_the_embeddings_and_both_shapes() -> None:
    model, batch = _model(), keyword_sentences(3)
    with pytest.raises(TypeError, match=r"torch.int64.*layer=.*\['embedding'\]"):
        right_reasons_penalty(model, batch, batch["mask"])
    with pytest.raises(
        ValueError, match=r"\(3, 11\).*neither the inputs \(3, 12\) nor.*\(3, 12, 6\)"
    ):
        right_reasons_penalty(model, batch, batch["mask"][:, :11], layer="embedding")
    with pytest.raises(ValueError, match=r"`layer='embed'` is not a module path.*\['embedding'\]"):
        right_reasons_penalty(model, batch, batch["mask"], layer="embed")
    with pytest.raises(ValueError, match="not part of the model"):
        right_reasons_penalty(model, batch, batch["mask"], layer=nn.Embedding(3, 2))
    with pytest.raises(TypeError, match=r"`mask`.*int64.*mask.bool\(\)"):
        right_reasons_penalty(model, batch, batch["mask"].long(), layer="embedding")
    # a layer that runs twice in one forward
    twice = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    twice.forward = lambda x: twice[0](twice[0](x))  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="ran 2 times"):
        right_reasons_penalty(twice, torch.randn(2, 4), torch.ones(2, 4), layer="0")


def test_find_another_explanation_keeps_user_frozen_submodules_in_eval() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    model[1].eval()  # frozen by the user
    find_another_explanation(model, torch.randn(6, 4))
    assert model.training and model[0].training and not model[1].training
