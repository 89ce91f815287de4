"""ExplanationRegularizedClassifier on token ids: dict batches through the BatchAdapter, the
penalty at the embedding, and the decisive words found by integrated gradients after a short fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from captum.attr import LayerIntegratedGradients
from torch.utils.data import DataLoader

from lightning_xai.attribution import Attributor
from lightning_xai.data import KeywordSentencesDataModule, SentenceDataset, keyword_sentences
from lightning_xai.modules import ExplanationRegularizedClassifier
from lightning_xai.nn import TokenClassifier
from lightning_xai.utilities import BatchAdapter
from tests.helpers import make_trainer
from tests.user_models import TwoInputNet, two_input_data

pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no")
VOCAB = 29


class FirstGradients(pl.Callback):
    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.grads is None:
            self.grads = {n: p.grad.clone() for n, p in pl_module.named_parameters()}


def _module(penalty_weight: float = 10.0, **kwargs) -> ExplanationRegularizedClassifier:
    torch.manual_seed(0)
    backbone = TokenClassifier(VOCAB, embedding_dim=16, num_classes=2, hidden=32)
    kwargs.setdefault("layer", "embedding")
    return ExplanationRegularizedClassifier(
        backbone, num_classes=2, penalty_weight=penalty_weight, lr=1e-2, **kwargs
    )


def _loader(data: dict, batch_size: int = 16) -> DataLoader:
    return DataLoader(SentenceDataset(data), batch_size=batch_size, shuffle=False)


def _first_step(tmp_path: Path, module, loader) -> dict[str, torch.Tensor]:
    recorder = FirstGradients()
    trainer = make_trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(module, train_dataloaders=loader)
    return recorder.grads


def test_first_step_is_the_formula_and_a_zero_mask_is_plain_training(tmp_path) -> None:
    data = keyword_sentences(16, seed=7)
    zero = {**data, "mask": torch.zeros_like(data["mask"])}
    penalised = _first_step(tmp_path / "a", _module(50.0), _loader(data))
    zero_mask = _first_step(tmp_path / "b", _module(50.0), _loader(zero))

    reference = _module(50.0)  # the loss written out by hand
    ids, keep, y, mask = data["input_ids"], data["attention_mask"], data["labels"], data["mask"]
    store = {}
    handle = reference.model.embedding.register_forward_hook(lambda m, a, o: store.update(e=o))
    logits = reference(ids, attention_mask=keep)
    handle.remove()
    (g,) = torch.autograd.grad(F.log_softmax(logits, -1).sum(), store["e"], create_graph=True)
    penalty = ((mask[..., None] * g) ** 2).sum(dim=(1, 2)).mean()
    (F.cross_entropy(logits, y) + 50.0 * penalty).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(penalised[name], p.grad, rtol=1e-4, atol=1e-6)

    plain = _module(50.0)
    F.cross_entropy(plain(ids, attention_mask=keep), y).backward()
    for name, p in plain.named_parameters():
        assert torch.equal(zero_mask[name], p.grad), name
    assert not torch.allclose(
        penalised["model.attention.weight"], zero_mask["model.attention.weight"]
    )


def _token_attributions(module, data: dict) -> dict[str, float]:
    """Mean |integrated gradients| of the keyword, the decoy and the filler words (captum's
    LayerIntegratedGradients on the embedding, summed over the embedding, padding masked;
    the Attributor on the dict batch gives the same numbers)."""
    model = module.model.eval()
    ids, keep = data["input_ids"], data["attention_mask"]
    target = model(ids, keep).argmax(-1)
    lig = LayerIntegratedGradients(model, model.embedding)
    attr = lig.attribute(ids, additional_forward_args=(keep,), target=target, n_steps=32)
    scores = attr.sum(-1).abs() * keep
    # the same through the project's Attributor on the raw dict batch
    through = Attributor(
        model, "integrated_gradients", layer="embedding", method_kwargs={"n_steps": 32}
    ).attribute(data)
    torch.testing.assert_close(through.attributions, attr.sum(-1) * keep, rtol=1e-4, atol=1e-6)
    assert torch.equal(through.targets, target)
    filler = keep.bool() & ~data["rationale"] & ~data["mask"]
    return {
        "keyword": scores[data["rationale"]].mean().item(),
        "decoy": scores[data["mask"]].mean().item(),
        "filler": scores[filler].mean().item(),
    }


def test_after_a_short_fit_integrated_gradients_find_the_keyword(tmp_path, tb_events) -> None:
    dm = KeywordSentencesDataModule(batch_size=32, num_train=256, num_val=64, num_test=128)
    results = {}
    for weight in (0.0, 100.0):
        module = _module(weight)
        trainer = make_trainer(
            tmp_path / str(weight), max_epochs=5, limit_train_batches=None, limit_test_batches=None
        )
        trainer.fit(module, datamodule=dm)
        (test,) = trainer.test(module, datamodule=dm)
        dm.setup()
        results[weight] = (_token_attributions(module, dm.decoy_test_dataset.columns), test)
    rrr, rrr_test = results[100.0]
    plain, plain_test = results[0.0]
    # the regularized model explains its predictions by the keyword: largest mean |attribution|
    assert rrr["keyword"] > 5 * max(rrr["decoy"], rrr["filler"]), rrr
    assert rrr_test["test/acc"] > 0.85 and rrr_test["test/right_reasons"] < 0.05
    # the plain model learned the decoy word, and fails where it lies
    assert plain["decoy"] > plain["keyword"], plain
    assert plain_test["test/acc"] < 0.7 and plain_test["test/right_reasons"] > 0.3
    events = tb_events(tmp_path / "100.0")
    for stage in ("train", "val", "test"):
        for term in ("loss", "ce", "penalty", "acc", "right_reasons"):
            assert events.Scalars(f"{stage}/{term}"), (stage, term)


@pytest.mark.parametrize(
    "mask",
    [
        None,
        "mask",
        "tests.modules.test_explanation_regularized_text.decoy_mask",
        lambda b: b["mask"],
    ],
    ids=["default", "key", "dotted", "callable"],
)
def test_mask_option(mask, tmp_path) -> None:
    data = keyword_sentences(8, seed=2)
    module = _module(mask=mask)
    batch = dict(data)
    assert torch.equal(module.mask_of(batch), data["mask"])
    out = module.compute_loss(batch, mask=module.mask_of(batch))
    assert out["penalty"] > 0


def decoy_mask(batch: dict) -> torch.Tensor:
    """A mask function found by its dotted path (as a YAML config names it)."""
    return batch["mask"]


def test_mask_by_index_and_default_rules_for_tuples() -> None:
    data = keyword_sentences(4)
    ids, keep, y, mask = data["input_ids"], data["attention_mask"], data["labels"], data["mask"]
    module = _module(
        mask=3, adapter=BatchAdapter(inputs=0, labels=2, forward_kwargs={"attention_mask": 1})
    )
    assert module.mask_of((ids, keep, y, mask)) is mask
    # (image, features, y): the third entry is the labels, not a mask
    two = ExplanationRegularizedClassifier(
        TwoInputNet(), 2, adapter=BatchAdapter(inputs=(0, 1), labels=2)
    )
    image, features, labels = two_input_data(n=4)[:]
    assert two.mask_of((image, features, labels)) is None
    assert sorted(two.compute_loss((image, features, labels))) == ["ce", "logits", "loss"]
    with pytest.raises(ValueError, match=r"`mask='annotations'` is not in the batch"):
        _module(mask="annotations").mask_of(data)


def test_errors_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"`layer='embed'` is not a module path.*\['embedding'\]"):
        _module(layer="embed")
    with pytest.raises(TypeError, match="`mask` must be None"):
        _module(mask=2.5)
    data = keyword_sentences(8)
    with pytest.raises(TypeError, match=r"layer=.*\['embedding'\]"):
        _first_step(tmp_path / "a", _module(layer=None), _loader(data))
    bad = {**data, "labels": data["labels"] + 2}
    with pytest.raises(ValueError, match="class indices up to 3.*2 class scores"):
        _first_step(tmp_path / "b", _module(), _loader(bad))
    short = {**data, "mask": data["mask"][:, :5]}
    with pytest.raises(ValueError, match=r"\(8, 5\).*\(8, 12\).*\(8, 12, 16\)"):
        _first_step(tmp_path / "c", _module(), _loader(short))


def test_checkpoint_round_trip_keeps_layer_and_mask(tmp_path) -> None:
    module = _module(mask="mask")
    trainer = make_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=_loader(keyword_sentences(16)))
    path = tmp_path / "text.ckpt"
    trainer.save_checkpoint(path)
    loaded = ExplanationRegularizedClassifier.load_from_checkpoint(
        path, model=TokenClassifier(VOCAB, embedding_dim=16, num_classes=2, hidden=32)
    )
    assert loaded.layer == "embedding" and loaded.mask == "mask"
    for (name, p), q in zip(module.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name
    batch = keyword_sentences(4, seed=9)
    preds = loaded.predict_step(batch, 0)
    assert torch.equal(preds, module(batch["input_ids"], batch["attention_mask"]).argmax(-1))


def test_huggingface_backbone_first_step_is_the_formula(tmp_path, tb_events) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    layer = "bert.embeddings.word_embeddings"

    def module(attention: str = "eager") -> ExplanationRegularizedClassifier:
        torch.manual_seed(0)
        config._attn_implementation = attention  # as from_pretrained(..., attn_implementation=)
        bert = BertForSequenceClassification(config)
        return ExplanationRegularizedClassifier(bert, 2, penalty_weight=50.0, layer=layer)

    data = keyword_sentences(8, seed=3)
    grads = _first_step(tmp_path, module(), _loader(data, batch_size=8))
    reference = module()
    bert = reference.model
    ids, keep, y, mask = data["input_ids"], data["attention_mask"], data["labels"], data["mask"]
    e = bert.bert.embeddings.word_embeddings(ids)
    logits = bert(inputs_embeds=e, attention_mask=keep).logits
    (g,) = torch.autograd.grad(F.log_softmax(logits, -1).sum(), e, create_graph=True)
    penalty = ((mask[..., None] * g) ** 2).sum(dim=(1, 2)).mean()
    assert penalty > 0
    (F.cross_entropy(logits, y) + 50.0 * penalty).backward()
    for name, p in reference.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-7)
    assert tb_events(tmp_path).Scalars("train/penalty")
    # fused attention has no double backward on CPU: a clear error names the fix
    with pytest.raises(RuntimeError, match="attn_implementation='eager'"):
        _first_step(tmp_path / "sdpa", module("sdpa"), _loader(data, batch_size=8))
