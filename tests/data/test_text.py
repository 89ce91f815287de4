"""Keyword sentences: the label is the keyword, the decoy gives it away in train/val only."""

from __future__ import annotations

import pytest
import torch

from lightning_xai.data import KeywordSentencesDataModule, ids_to_tokens, keyword_sentences
from lightning_xai.data.text import CLASS_NAMES, DECOYS, FILLERS, KEYWORDS, VOCABULARY
from lightning_xai.nn import TokenClassifier
from lightning_xai.utilities import BatchAdapter


def _words(data: dict, n: int) -> list[str]:
    return ids_to_tokens(data["input_ids"][n], data["attention_mask"][n])


def test_sentences_are_decided_by_their_keyword() -> None:
    data = keyword_sentences(200, min_length=3, max_length=9, seed=4)
    lengths = data["attention_mask"].sum(1)
    assert lengths.min() >= 3 and lengths.max() <= 9 and data["input_ids"].shape == (200, 9)
    assert (data["input_ids"][data["attention_mask"] == 0] == 0).all()  # padded with <pad>
    for n in range(200):
        words = _words(data, n)
        label = int(data["labels"][n])
        keywords = [w for w in words if any(w in k for k in KEYWORDS)]
        assert len(keywords) == 1 and keywords[0] in KEYWORDS[label]
        assert words.count(DECOYS[label]) == 1 and DECOYS[1 - label] not in words
        assert set(words) <= set(KEYWORDS[label]) | {DECOYS[label]} | set(FILLERS)
        rationale = data["rationale"][n].nonzero().flatten().tolist()
        decoy = data["mask"][n].nonzero().flatten().tolist()
        assert [words[i] for i in rationale] == keywords
        assert [words[i] for i in decoy] == [DECOYS[label]]
    assert 0.35 < data["labels"].float().mean() < 0.65


def test_generation_is_seeded() -> None:
    a, b, c = keyword_sentences(16, seed=1), keyword_sentences(16, seed=1), keyword_sentences(16)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], c["input_ids"])


def test_datamodule_splits_decoys_and_dict_batches() -> None:
    dm = KeywordSentencesDataModule(batch_size=8, num_train=64, num_val=32, num_test=200)
    dm.setup("fit")
    assert len(dm.train_dataset) == 64 and len(dm.val_dataset) == 32
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch) == ["attention_mask", "input_ids", "labels", "mask", "rationale"]
    assert batch["input_ids"].shape == (8, 12) and batch["mask"].dtype == torch.bool
    assert dm.vocabulary == VOCABULARY and dm.vocab_size == len(VOCABULARY) == 29
    assert dm.num_classes == len(CLASS_NAMES) == 2
    # decoy test: the decoy word is random, so it disagrees with the label about half the time
    decoy = dm.decoy_test_dataset.columns
    decoy_ids = decoy["input_ids"][decoy["mask"]]
    disagree = decoy_ids != torch.tensor([VOCABULARY.index(w) for w in DECOYS])[decoy["labels"]]
    assert 0.3 < disagree.float().mean() < 0.7
    clean = dm.clean_test_dataset.columns
    assert not clean["mask"].any() and torch.equal(clean["labels"], decoy["labels"])
    assert next(iter(dm.test_dataloader()))["mask"].any()
    dm.test_split = "clean"
    assert not next(iter(dm.test_dataloader()))["mask"].any()
    # the same sentences on every setup
    again = KeywordSentencesDataModule(batch_size=8, num_train=64, num_val=32, num_test=200)
    again.setup("fit")
    assert torch.equal(
        again.train_dataset.columns["input_ids"], dm.train_dataset.columns["input_ids"]
    )
    no_decoy = KeywordSentencesDataModule(decoy=False, num_train=16)
    no_decoy.setup()
    assert not no_decoy.train_dataset.columns["mask"].any()


def test_batches_split_for_a_token_classifier() -> None:
    batch = next(iter(KeywordSentencesDataModule(batch_size=4).train_dataloader()))
    model = TokenClassifier(29)
    split = BatchAdapter().split(batch, model)
    args, kwargs = split.arguments()
    assert split.inputs[0] is batch["input_ids"] and split.labels is batch["labels"]
    assert list(kwargs) == ["input_ids", "attention_mask"] and not args
    assert split.call(model).shape == (4, 2)


def test_ids_to_tokens() -> None:
    ids = torch.tensor([[9, 4, 8, 0], [22, 1, 0, 0]])
    assert ids_to_tokens(ids) == [
        ["the", "good", "today", "<pad>"],
        ["this", "bad", "<pad>", "<pad>"],
    ]
    assert ids_to_tokens(ids, ids != 0) == [["the", "good", "today"], ["this", "bad"]]
    assert KeywordSentencesDataModule.ids_to_tokens(5) == "great"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_length": 1}, ValueError, r"`min_length` must be in \[2, max_length=12\].*got 1"),
        ({"min_length": 8, "max_length": 6}, ValueError, "`min_length`"),
        ({"test_split": "noisy"}, ValueError, r"`test_split` must be one of.*'noisy'"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be a positive integer"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        KeywordSentencesDataModule(**kwargs)
