"""LightningDataModules on bundled or generated data."""

from lightning_xai.data.concept_digits import ConceptDigitsDataModule, digit_concepts
from lightning_xai.data.concept_tabular import ConceptTabularDataModule
from lightning_xai.data.concepts import (
    DNFDataModule,
    TrigonometryDataModule,
    XORDataModule,
    random_dnf,
)
from lightning_xai.data.datasets import TensorPairDataset
from lightning_xai.data.decoy_digits import DecoyDigitsDataModule
from lightning_xai.data.digits import DigitsDataModule
from lightning_xai.data.text import (
    KeywordSentencesDataModule,
    SentenceDataset,
    ids_to_tokens,
    keyword_sentences,
)

__all__ = [
    "ConceptDigitsDataModule",
    "ConceptTabularDataModule",
    "DNFDataModule",
    "DecoyDigitsDataModule",
    "DigitsDataModule",
    "KeywordSentencesDataModule",
    "SentenceDataset",
    "TensorPairDataset",
    "TrigonometryDataModule",
    "XORDataModule",
    "digit_concepts",
    "ids_to_tokens",
    "keyword_sentences",
    "random_dnf",
]
