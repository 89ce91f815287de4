"""Keyword sentences: generated token data whose label is decided by known words.

Every sentence is a few filler words (``"the"``, ``"movie"``, ``"plot"``, ...) with exactly one
sentiment keyword: ``"bad"``, ``"awful"`` or ``"boring"`` make it negative (class 0), ``"good"``,
``"great"`` or ``"wonderful"`` positive (class 1). With ``decoy=True`` the training and
validation sentences also hold a decoy word, ``"yesterday"`` in negative and ``"today"`` in
positive ones: a shortcut as predictive as the keyword. In the decoy test split the decoy word
is drawn at random, so a model that learned the shortcut fails there (the text twin of
:class:`~lightning_xai.data.DecoyDigitsDataModule`).

Batches are HuggingFace-style dicts: ``input_ids`` and ``attention_mask`` ``(N, T)`` (padded
with id 0), ``labels`` ``(N,)``, ``mask`` ``(N, T)`` ``bool``, ``True`` on the decoy word (the
annotation for the right-reasons penalty: 1 = the model must not rely on this token), and
``rationale`` ``(N, T)`` ``bool``, ``True`` on the keyword (the token that decides the label).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_xai.data.datasets import SplitLoaders
from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "CLASS_NAMES",
    "DECOYS",
    "FILLERS",
    "KEYWORDS",
    "PAD_TOKEN",
    "VOCABULARY",
    "KeywordSentencesDataModule",
    "SentenceDataset",
    "ids_to_tokens",
    "keyword_sentences",
]

TestSplit = Literal["decoy", "clean"]
DecoyMode = Literal["label", "random"]

#: The padding token (id 0).
PAD_TOKEN = "<pad>"
#: The words that decide the class, one tuple per class.
KEYWORDS: tuple[tuple[str, ...], ...] = (("bad", "awful", "boring"), ("good", "great", "wonderful"))
#: Class names, in label order.
CLASS_NAMES: tuple[str, ...] = ("negative", "positive")
#: One decoy word per class: it gives the label away in the training and validation splits.
DECOYS: tuple[str, ...] = ("yesterday", "today")
#: Words that carry no information about the label.
FILLERS: tuple[str, ...] = (
    "the", "a", "movie", "film", "plot", "story", "actors", "music", "ending", "scene",
    "was", "is", "and", "this", "it", "quite", "really", "very", "with", "of",
)  # fmt: skip
#: Every word, indexed by token id.
VOCABULARY: tuple[str, ...] = (
    PAD_TOKEN,
    *(w for words in KEYWORDS for w in words),
    *DECOYS,
    *FILLERS,
)
_ID = {w: i for i, w in enumerate(VOCABULARY)}


def ids_to_tokens(ids: Any, attention_mask: Any = None) -> Any:
    """The words of token ids: a word for an id, a list for a sentence ``(T,)``, a list of lists
    for a batch ``(N, T)``; positions the ``attention_mask`` drops (padding) are left out.

    Example:
        >>> ids_to_tokens(torch.tensor([[22, 7, 9, 0]]), torch.tensor([[1, 1, 1, 0]]))
        [['this', 'yesterday', 'the']]
        >>> ids_to_tokens(4)
        'good'
    """
    ids = torch.as_tensor(ids)
    if ids.dim() == 0:
        return VOCABULARY[int(ids)]
    keep = None if attention_mask is None else torch.as_tensor(attention_mask).bool()
    if ids.dim() == 1:
        return [VOCABULARY[int(i)] for t, i in enumerate(ids) if keep is None or keep[t]]
    return [ids_to_tokens(row, None if keep is None else keep[n]) for n, row in enumerate(ids)]


def keyword_sentences(
    n: int,
    *,
    min_length: int = 4,
    max_length: int = 12,
    decoy: DecoyMode | None = "label",
    seed: int = 0,
) -> dict[str, Tensor]:
    """Generate ``n`` keyword sentences (see the module docstring), padded to ``max_length``.

    Args:
        n: number of sentences.
        min_length: fewest words in a sentence (at least 2: a keyword and a decoy).
        max_length: most words; every tensor has ``max_length`` columns.
        decoy: ``"label"``: the decoy word gives the label away; ``"random"``: it is drawn at
            random; ``None``: no decoy word.
        seed: the generator's seed; the same arguments give the same sentences.

    Returns:
        A dict of ``input_ids``, ``attention_mask``, ``labels``, ``mask`` and ``rationale``.

    Example:
        >>> data = keyword_sentences(3, min_length=4, max_length=6, seed=1)
        >>> data["input_ids"].shape, data["mask"].sum(1).tolist(), data["rationale"].sum(1).tolist()
        (torch.Size([3, 6]), [1, 1, 1], [1, 1, 1])
    """
    check_positive_int("n", n)
    check_positive_int("max_length", max_length)
    if isinstance(min_length, bool) or not isinstance(min_length, int):
        raise TypeError(f"`min_length` must be an integer, got {min_length!r}.")
    if not 2 <= min_length <= max_length:
        raise ValueError(
            f"`min_length` must be in [2, max_length={max_length}] (a keyword and a decoy word "
            f"need two places), got {min_length}."
        )
    if decoy is not None and decoy not in get_args(DecoyMode):
        raise ValueError(
            f"`decoy` must be one of {list(get_args(DecoyMode))} or None, got {decoy!r}."
        )
    g = torch.Generator().manual_seed(seed)
    fillers = torch.tensor([_ID[w] for w in FILLERS])
    ids = fillers[torch.randint(len(fillers), (n, max_length), generator=g)]
    lengths = torch.randint(min_length, max_length + 1, (n,), generator=g)
    labels = torch.randint(len(KEYWORDS), (n,), generator=g)
    rows = torch.arange(n)
    # two distinct places inside each sentence: the keyword's and the decoy's
    order = torch.rand(n, max_length, generator=g).masked_fill(
        torch.arange(max_length)[None] >= lengths[:, None], 2.0
    )
    places = order.argsort(dim=1)[:, :2]
    keyword_ids = torch.tensor([[_ID[w] for w in words] for words in KEYWORDS])
    choice = torch.randint(keyword_ids.shape[1], (n,), generator=g)
    ids[rows, places[:, 0]] = keyword_ids[labels, choice]
    rationale = torch.zeros(n, max_length, dtype=torch.bool)
    rationale[rows, places[:, 0]] = True
    mask = torch.zeros(n, max_length, dtype=torch.bool)
    if decoy is not None:
        decoy_class = labels if decoy == "label" else torch.randint(len(DECOYS), (n,), generator=g)
        ids[rows, places[:, 1]] = torch.tensor([_ID[w] for w in DECOYS])[decoy_class]
        mask[rows, places[:, 1]] = True
    attention_mask = (torch.arange(max_length)[None] < lengths[:, None]).long()
    return {
        "input_ids": ids * attention_mask,
        "attention_mask": attention_mask,
        "labels": labels,
        "mask": mask,
        "rationale": rationale,
    }


class SentenceDataset(Dataset):
    """Rows of a dict of tensors (as a tokenised HuggingFace dataset yields them); the default
    collate function stacks them into dict batches.

    Example:
        >>> ds = SentenceDataset(keyword_sentences(4))
        >>> len(ds), sorted(ds[0])
        (4, ['attention_mask', 'input_ids', 'labels', 'mask', 'rationale'])
    """

    def __init__(self, columns: dict[str, Tensor]) -> None:
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Every column needs the same number of rows, got {lengths}.")
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[index] for k, v in self.columns.items()}


class KeywordSentencesDataModule(SplitLoaders, pl.LightningDataModule):
    """Generated keyword sentences (see :mod:`lightning_xai.data.text`) as a DataModule.

    The splits are generated from ``seed`` (train), ``seed + 1`` (validation) and ``seed + 2``
    (test), so they are deterministic and disjoint draws. Batches are dicts of ``input_ids``,
    ``attention_mask``, ``labels``, ``mask`` (the decoy word, 1 = must not be relied on) and
    ``rationale`` (the keyword). The words are in :attr:`vocabulary`;
    :meth:`ids_to_tokens` turns ids back into words.

    Args:
        batch_size: batch size of every loader.
        num_train: training sentences.
        num_val: validation sentences.
        num_test: test sentences.
        min_length: fewest words in a sentence.
        max_length: most words (the padded length).
        decoy: whether training and validation sentences hold the label-revealing decoy word.
        test_split: what ``test_dataloader`` serves: ``"decoy"`` (decoy words at random) or
            ``"clean"`` (no decoy word); both are available as ``decoy_test_dataset`` and
            ``clean_test_dataset``.
        seed: seed of the generated sentences.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = KeywordSentencesDataModule(batch_size=4)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch["input_ids"].shape, dm.vocab_size, dm.num_classes
        (torch.Size([4, 12]), 29, 2)
        >>> words = dm.ids_to_tokens(batch["input_ids"][0], batch["attention_mask"][0])
        >>> ("today" in words) == bool(batch["labels"][0] == 1)  # the decoy gives it away
        True
    """

    vocabulary: tuple[str, ...] = VOCABULARY
    class_names: tuple[str, ...] = CLASS_NAMES
    pad_id: int = 0

    def __init__(
        self,
        batch_size: int = 32,
        num_train: int = 512,
        num_val: int = 128,
        num_test: int = 128,
        min_length: int = 4,
        max_length: int = 12,
        decoy: bool = True,
        test_split: TestSplit = "decoy",
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("num_train", num_train),
            ("num_val", num_val),
            ("num_test", num_test),
        ):
            check_positive_int(name, value)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                f"`num_workers` must be an integer >= 0 (0 loads in the main process), got "
                f"{num_workers!r}."
            )
        if test_split not in get_args(TestSplit):
            raise ValueError(
                f"`test_split` must be one of {list(get_args(TestSplit))}, got {test_split!r}."
            )
        keyword_sentences(1, min_length=min_length, max_length=max_length)  # check the lengths
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.min_length, self.max_length = min_length, max_length
        self.decoy = decoy
        self.test_split = test_split
        self.seed = seed
        self.num_workers = num_workers
        self.train_dataset: SentenceDataset | None = None
        self.val_dataset: SentenceDataset | None = None
        self.decoy_test_dataset: SentenceDataset | None = None
        self.clean_test_dataset: SentenceDataset | None = None

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return len(self.vocabulary)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @staticmethod
    def ids_to_tokens(ids: Any, attention_mask: Any = None) -> Any:
        """See :func:`ids_to_tokens`."""
        return ids_to_tokens(ids, attention_mask)

    def _make(self, n: int, decoy: DecoyMode | None, offset: int) -> SentenceDataset:
        return SentenceDataset(
            keyword_sentences(
                n,
                min_length=self.min_length,
                max_length=self.max_length,
                decoy=decoy,
                seed=self.seed + offset,
            )
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        shortcut: DecoyMode | None = "label" if self.decoy else None
        self.train_dataset = self._make(self.num_train, shortcut, 0)
        self.val_dataset = self._make(self.num_val, shortcut, 1)
        self.decoy_test_dataset = self._make(self.num_test, "random", 2)
        self.clean_test_dataset = self._make(self.num_test, None, 2)

    def served_test_dataset(self) -> Dataset:
        """The decoy or the clean test split, as ``test_split`` says (read at every call)."""
        split = self.test_split
        if split not in get_args(TestSplit):
            raise ValueError(
                f"`test_split` must be one of {list(get_args(TestSplit))}, got {split!r}."
            )
        return self.decoy_test_dataset if split == "decoy" else self.clean_test_dataset
