"""A bad-input table over the constructors of the modules, layers, data modules, extraction
options and metrics: every non-finite, out-of-range or wrongly typed number ends in the
documented error type, before any work, with a message that names the argument and the value.
A second table feeds the modules' training and evaluation steps bad batches through a real
``Trainer``-free call of the step methods."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lightning_xai.data.concepts import DNFDataModule, TrigonometryDataModule, XORDataModule
from lightning_xai.data.decoy_digits import DecoyDigitsDataModule, add_decoy
from lightning_xai.data.digits import DigitsDataModule, flip_labels, split_indices
from lightning_xai.data.text import KeywordSentencesDataModule, keyword_sentences
from lightning_xai.logic import ExtractionOptions, simplify_rule_expr
from lightning_xai.logic.rule import Rule
from lightning_xai.metrics.consistency import ExampleConsistency, FeatureConsistency
from lightning_xai.metrics.logic import RuleAccuracy, RuleFidelity
from lightning_xai.modules.autoencoder import AutoEncoder, VariationalAutoEncoder
from lightning_xai.modules.classifier import Classifier
from lightning_xai.modules.logic_explainer import LogicExplainer, MLPLogicExplainer
from lightning_xai.nn import MLP, DigitsCNN, DigitsDecoder, DigitsEncoder, EntropyLinear
from lightning_xai.nn.autoencoders import perturb
from lightning_xai.nn.text import TokenClassifier

NAN, INF = float("nan"), float("inf")
RULE = Rule.from_string("c0 & ~c1", ["c0", "c1"], class_index=1)


def _logic(**kwargs: Any) -> LogicExplainer:
    return LogicExplainer(n_concepts=3, n_classes=2, **kwargs)


def _mlp_logic(**kwargs: Any) -> MLPLogicExplainer:
    return MLPLogicExplainer(n_concepts=3, n_classes=2, **kwargs)


# (entry point, call, error type, words the message must contain: the argument and the value)
TABLE: list[tuple[str, Any, type[Exception], tuple[str, ...]]] = [
    # ------------------------------------------------------------------ Classifier
    ("Classifier", lambda: Classifier(lr=NAN), ValueError, ("`lr`", "nan")),
    ("Classifier", lambda: Classifier(lr=INF), ValueError, ("`lr`", "inf")),
    ("Classifier", lambda: Classifier(lr=0.0), ValueError, ("`lr`", "0.0")),
    ("Classifier", lambda: Classifier(lr="0.1"), ValueError, ("`lr`", "'0.1'")),
    ("Classifier", lambda: Classifier(weight_decay=-1.0), ValueError, ("`weight_decay`", "-1")),
    ("Classifier", lambda: Classifier(weight_decay=NAN), ValueError, ("`weight_decay`", "nan")),
    ("Classifier", lambda: Classifier(weight_decay=INF), ValueError, ("`weight_decay`", "inf")),
    ("Classifier", lambda: Classifier(num_classes=1), ValueError, ("`num_classes`", "1")),
    ("Classifier", lambda: Classifier(num_classes=True), ValueError, ("`num_classes`", "True")),
    ("Classifier", lambda: Classifier(optimizer="lbfgs"), ValueError, ("`optimizer`", "lbfgs")),
    ("Classifier", lambda: Classifier(adapter="tuple"), TypeError, ("`adapter`", "str")),
    # ------------------------------------------------------------------ AutoEncoder
    ("AutoEncoder", lambda: AutoEncoder(lr=NAN), ValueError, ("`lr`", "nan")),
    ("AutoEncoder", lambda: AutoEncoder(lr=-1e-3), ValueError, ("`lr`", "-0.001")),
    ("AutoEncoder", lambda: AutoEncoder(weight_decay=-1), ValueError, ("`weight_decay`", "-1")),
    ("AutoEncoder", lambda: AutoEncoder(weight_decay=INF), ValueError, ("`weight_decay`", "inf")),
    ("AutoEncoder", lambda: AutoEncoder(noise_level=NAN), ValueError, ("`noise_level`", "nan")),
    ("AutoEncoder", lambda: AutoEncoder(noise_level=INF), ValueError, ("`noise_level`", "inf")),
    ("AutoEncoder", lambda: AutoEncoder(noise_level=-0.1), ValueError, ("`noise_level`", "-0.1")),
    (
        "AutoEncoder",
        lambda: AutoEncoder(mask_proportion=1.5),
        ValueError,
        ("`mask_proportion`", "1.5"),
    ),
    (
        "AutoEncoder",
        lambda: AutoEncoder(mask_proportion=NAN),
        ValueError,
        ("`mask_proportion`", "nan"),
    ),
    ("AutoEncoder", lambda: AutoEncoder(latent_dim=0), ValueError, ("`latent_dim`", "0")),
    ("AutoEncoder", lambda: AutoEncoder(loss="l1"), ValueError, ("`loss`", "'l1'")),
    ("AutoEncoder", lambda: AutoEncoder(pretext="rotate"), ValueError, ("`pretext`", "rotate")),
    ("AutoEncoder", lambda: AutoEncoder(sigmoid="yes"), TypeError, ("`sigmoid`", "'yes'")),
    # ------------------------------------------------------------------ VariationalAutoEncoder
    (
        "VariationalAutoEncoder",
        lambda: VariationalAutoEncoder(beta=INF),
        ValueError,
        ("`beta`", "inf"),
    ),
    (
        "VariationalAutoEncoder",
        lambda: VariationalAutoEncoder(beta=NAN),
        ValueError,
        ("`beta`", "nan"),
    ),
    (
        "VariationalAutoEncoder",
        lambda: VariationalAutoEncoder(beta=-1.0),
        ValueError,
        ("`beta`", "-1.0"),
    ),
    ("VariationalAutoEncoder", lambda: VariationalAutoEncoder(lr=NAN), ValueError, ("`lr`", "nan")),
    (
        "VariationalAutoEncoder",
        lambda: VariationalAutoEncoder(noise_level=NAN, pretext="denoise"),
        ValueError,
        ("`noise_level`", "nan"),
    ),
    # ------------------------------------------------------------------ LogicExplainer
    ("LogicExplainer", lambda: _logic(temperature=0), ValueError, ("`temperature`", "0")),
    ("LogicExplainer", lambda: _logic(temperature=NAN), ValueError, ("`temperature`", "nan")),
    ("LogicExplainer", lambda: _logic(temperature=INF), ValueError, ("`temperature`", "inf")),
    ("LogicExplainer", lambda: _logic(entropy_weight=NAN), ValueError, ("`entropy_weight`", "nan")),
    ("LogicExplainer", lambda: _logic(entropy_weight=INF), ValueError, ("`entropy_weight`", "inf")),
    ("LogicExplainer", lambda: _logic(entropy_weight=-1), ValueError, ("`entropy_weight`", "-1")),
    ("LogicExplainer", lambda: _logic(lr=NAN), ValueError, ("`lr`", "nan")),
    ("LogicExplainer", lambda: _logic(lr=INF), ValueError, ("`lr`", "inf")),
    ("LogicExplainer", lambda: _logic(hidden=(4, 0)), ValueError, ("`hidden`", "0")),
    ("LogicExplainer", lambda: _logic(task="binary"), ValueError, ("`task`", "'binary'")),
    (
        "LogicExplainer",
        lambda: LogicExplainer(n_concepts=0, n_classes=2),
        ValueError,
        ("`n_concepts`", "0"),
    ),
    (
        "LogicExplainer",
        lambda: LogicExplainer(n_concepts=3, n_classes=1),
        ValueError,
        ("`n_classes`", "1"),
    ),
    (
        "LogicExplainer",
        lambda: _logic(concept_names=["a", "a", "b"]),
        ValueError,
        ("`concept_names`",),
    ),
    # ------------------------------------------------------------------ MLPLogicExplainer
    ("MLPLogicExplainer", lambda: _mlp_logic(l1_weight=-1), ValueError, ("`l1_weight`", "-1")),
    ("MLPLogicExplainer", lambda: _mlp_logic(l1_weight=NAN), ValueError, ("`l1_weight`", "nan")),
    ("MLPLogicExplainer", lambda: _mlp_logic(l1_weight=INF), ValueError, ("`l1_weight`", "inf")),
    ("MLPLogicExplainer", lambda: _mlp_logic(lr=INF), ValueError, ("`lr`", "inf")),
    ("MLPLogicExplainer", lambda: _mlp_logic(hidden=()), ValueError, ("`hidden`", "()")),
    # ------------------------------------------------------------------ nn
    (
        "EntropyLinear",
        lambda: EntropyLinear(3, 2, 2, temperature=0),
        ValueError,
        ("`temperature`", "0"),
    ),
    (
        "EntropyLinear",
        lambda: EntropyLinear(3, 2, 2, temperature=NAN),
        ValueError,
        ("`temperature`", "nan"),
    ),
    (
        "EntropyLinear",
        lambda: EntropyLinear(3, 2, 2, temperature=INF),
        ValueError,
        ("`temperature`", "inf"),
    ),
    ("EntropyLinear", lambda: EntropyLinear(0, 2, 2), ValueError, ("`in_features`", "0")),
    ("DigitsEncoder", lambda: DigitsEncoder(0), ValueError, ("`out_features`", "0")),
    ("DigitsEncoder", lambda: DigitsEncoder(4, channels=(4, 0)), ValueError, ("`channels`", "0")),
    ("DigitsDecoder", lambda: DigitsDecoder(-1), ValueError, ("`latent_dim`", "-1")),
    ("DigitsCNN", lambda: DigitsCNN(0), ValueError, ("`num_classes`", "0")),
    ("DigitsCNN", lambda: DigitsCNN(10, channels=(16,)), ValueError, ("`channels`", "(16,)")),
    ("MLP", lambda: MLP(0), ValueError, ("`in_features`", "0")),
    ("MLP", lambda: MLP(64, (0,)), ValueError, ("`hidden`", "0")),
    ("MLP", lambda: MLP(64, (8,), out_features=-2), ValueError, ("`out_features`", "-2")),
    ("TokenClassifier", lambda: TokenClassifier(0), ValueError, ("`vocab_size`", "0")),
    (
        "TokenClassifier",
        lambda: TokenClassifier(10, num_classes=1),
        ValueError,
        ("`num_classes`", "1"),
    ),
    (
        "TokenClassifier",
        lambda: TokenClassifier(10, padding_idx=10),
        ValueError,
        ("`padding_idx`", "10"),
    ),
    (
        "perturb",
        lambda: perturb(torch.ones(2, 3), "denoise", noise_level=NAN),
        ValueError,
        ("`noise_level`", "nan"),
    ),
    (
        "perturb",
        lambda: perturb(torch.ones(2, 3), "mask", mask_proportion=1.5),
        ValueError,
        ("`mask_proportion`", "1.5"),
    ),
    (
        "perturb",
        lambda: perturb(torch.ones(2, 3), "mask", mask_proportion=NAN),
        ValueError,
        ("`mask_proportion`", "nan"),
    ),
    # ------------------------------------------------------------------ ExtractionOptions
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(relevance_threshold=NAN),
        ValueError,
        ("`relevance_threshold`", "nan"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(concept_threshold=NAN),
        ValueError,
        ("`concept_threshold`", "nan"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(concept_threshold=1.5),
        ValueError,
        ("`concept_threshold`", "1.5"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(concept_threshold=-INF),
        ValueError,
        ("`concept_threshold`", "-inf"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(min_concept_gain=NAN),
        ValueError,
        ("`min_concept_gain`", "nan"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(min_term_gain=-0.1),
        ValueError,
        ("`min_term_gain`", "-0.1"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(max_concepts=0),
        ValueError,
        ("`max_concepts`", "0"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(simplify_timeout=NAN),
        ValueError,
        ("`simplify_timeout`", "nan"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(simplify_timeout=INF),
        ValueError,
        ("`simplify_timeout`", "inf"),
    ),
    (
        "ExtractionOptions",
        lambda: ExtractionOptions(simplify="no"),
        TypeError,
        ("`simplify`", "'no'"),
    ),
    (
        "simplify_rule_expr",
        lambda: simplify_rule_expr(RULE.expr, timeout=NAN),
        ValueError,
        ("`timeout`", "nan"),
    ),
    (
        "simplify_rule_expr",
        lambda: simplify_rule_expr(RULE.expr, max_symbols=-1),
        ValueError,
        ("`max_symbols`", "-1"),
    ),
    # ------------------------------------------------------------------ metrics
    ("RuleAccuracy", lambda: RuleAccuracy(RULE, threshold=NAN), ValueError, ("`threshold`", "nan")),
    ("RuleAccuracy", lambda: RuleAccuracy(RULE, threshold=1.5), ValueError, ("`threshold`", "1.5")),
    ("RuleAccuracy", lambda: RuleAccuracy("c0 & c1"), TypeError, ("`rule`", "str")),
    ("RuleAccuracy", lambda: RuleAccuracy(RULE, num_classes=1), ValueError, ("`num_classes`", "1")),
    ("RuleFidelity", lambda: RuleFidelity(RULE, threshold=INF), ValueError, ("`threshold`", "inf")),
    ("FeatureConsistency", lambda: FeatureConsistency(lambda x: x, k=0), ValueError, ("`k`", "0")),
    (
        "FeatureConsistency",
        lambda: FeatureConsistency(lambda x: x, baseline=NAN),
        ValueError,
        ("`baseline`", "nan"),
    ),
    (
        "FeatureConsistency",
        lambda: FeatureConsistency(lambda x: x, baseline=torch.tensor([0.0, INF])),
        ValueError,
        ("`baseline`", "inf"),
    ),
    (
        "FeatureConsistency",
        lambda: FeatureConsistency(lambda x: x, n_random=0),
        ValueError,
        ("`n_random`", "0"),
    ),
    ("FeatureConsistency", lambda: FeatureConsistency("encode"), TypeError, ("`encoder`", "str")),
    ("ExampleConsistency", lambda: ExampleConsistency(k=0), ValueError, ("`k`", "0")),
    ("ExampleConsistency", lambda: ExampleConsistency(k=2.5), ValueError, ("`k`", "2.5")),
    # ------------------------------------------------------------------ data
    (
        "DigitsDataModule",
        lambda: DigitsDataModule(flip_fraction=NAN),
        ValueError,
        ("`flip_fraction`", "nan"),
    ),
    (
        "DigitsDataModule",
        lambda: DigitsDataModule(flip_fraction=1.5),
        ValueError,
        ("`flip_fraction`", "1.5"),
    ),
    (
        "DigitsDataModule",
        lambda: DigitsDataModule(val_fraction=NAN),
        ValueError,
        ("`val_fraction`", "nan"),
    ),
    (
        "DigitsDataModule",
        lambda: DigitsDataModule(test_fraction=INF),
        ValueError,
        ("`test_fraction`", "inf"),
    ),
    (
        "DigitsDataModule",
        lambda: DigitsDataModule(val_fraction=0.6, test_fraction=0.5),
        ValueError,
        ("`val_fraction`", "0.6"),
    ),
    ("DigitsDataModule", lambda: DigitsDataModule(batch_size=0), ValueError, ("`batch_size`", "0")),
    (
        "DigitsDataModule",
        lambda: DigitsDataModule(num_workers=-1),
        ValueError,
        ("`num_workers`", "-1"),
    ),
    ("DigitsDataModule", lambda: DigitsDataModule(seed=1.5), TypeError, ("`seed`", "1.5")),
    (
        "split_indices",
        lambda: split_indices(10, NAN, 0.2, 0),
        ValueError,
        ("`val_fraction`", "nan"),
    ),
    ("split_indices", lambda: split_indices(-1, 0.2, 0.2, 0), ValueError, ("`n`", "-1")),
    (
        "flip_labels",
        lambda: flip_labels(torch.zeros(4, dtype=torch.long), NAN, 3, 0),
        ValueError,
        ("`flip_fraction`", "nan"),
    ),
    (
        "flip_labels",
        lambda: flip_labels(torch.zeros(4, dtype=torch.long), 0.5, 1, 0),
        ValueError,
        ("`num_classes`", "1"),
    ),
    ("flip_labels", lambda: flip_labels(torch.tensor([0, 5]), 0.5, 3, 0), ValueError, ("`y`", "5")),
    (
        "DecoyDigitsDataModule",
        lambda: DecoyDigitsDataModule(val_fraction=NAN),
        ValueError,
        ("`val_fraction`", "nan"),
    ),
    (
        "DecoyDigitsDataModule",
        lambda: DecoyDigitsDataModule(padding=0),
        ValueError,
        ("`padding`", "0"),
    ),
    (
        "DecoyDigitsDataModule",
        lambda: DecoyDigitsDataModule(patch_size=4),
        ValueError,
        ("`patch_size`", "4"),
    ),
    (
        "DecoyDigitsDataModule",
        lambda: DecoyDigitsDataModule(test_split="noisy"),
        ValueError,
        ("`test_split`", "'noisy'"),
    ),
    (
        "DecoyDigitsDataModule",
        lambda: DecoyDigitsDataModule(batch_size=-3),
        ValueError,
        ("`batch_size`", "-3"),
    ),
    (
        "add_decoy",
        lambda: add_decoy(torch.zeros(1, 1, 4, 4), torch.tensor([NAN]), torch.tensor([0]), 2),
        ValueError,
        ("`intensity`", "NaN"),
    ),
    (
        "add_decoy",
        lambda: add_decoy(torch.zeros(1, 1, 4, 4), torch.tensor([0.5]), torch.tensor([4]), 2),
        ValueError,
        ("`corner`", "4"),
    ),
    (
        "add_decoy",
        lambda: add_decoy(torch.zeros(1, 1, 4, 4), torch.tensor([0.5]), torch.tensor([0]), 5),
        ValueError,
        ("`patch_size`", "5"),
    ),
    ("XORDataModule", lambda: XORDataModule(label_noise=NAN), ValueError, ("`label_noise`", "nan")),
    ("XORDataModule", lambda: XORDataModule(label_noise=0.7), ValueError, ("`label_noise`", "0.7")),
    (
        "XORDataModule",
        lambda: XORDataModule(val_fraction=NAN),
        ValueError,
        ("`val_fraction`", "nan"),
    ),
    ("XORDataModule", lambda: XORDataModule(n_samples=5), ValueError, ("`n_samples`", "5")),
    (
        "XORDataModule",
        lambda: XORDataModule(n_noise_concepts=-1),
        ValueError,
        ("`n_noise_concepts`", "-1"),
    ),
    (
        "TrigonometryDataModule",
        lambda: TrigonometryDataModule(label_noise=INF),
        ValueError,
        ("`label_noise`", "inf"),
    ),
    (
        "TrigonometryDataModule",
        lambda: TrigonometryDataModule(test_fraction=NAN),
        ValueError,
        ("`test_fraction`", "nan"),
    ),
    ("DNFDataModule", lambda: DNFDataModule(label_noise=NAN), ValueError, ("`label_noise`", "nan")),
    ("DNFDataModule", lambda: DNFDataModule(n_concepts=0), ValueError, ("`n_concepts`", "0")),
    (
        "DNFDataModule",
        lambda: DNFDataModule(n_concepts=4, n_noise_concepts=4),
        ValueError,
        ("`n_noise_concepts`", "4"),
    ),
    (
        "DNFDataModule",
        lambda: DNFDataModule(n_concepts=4, rules=["c9"]),
        ValueError,
        ("`rules`", "c9"),
    ),
    (
        "KeywordSentencesDataModule",
        lambda: KeywordSentencesDataModule(batch_size=0),
        ValueError,
        ("`batch_size`", "0"),
    ),
    (
        "KeywordSentencesDataModule",
        lambda: KeywordSentencesDataModule(min_length=1),
        ValueError,
        ("`min_length`", "1"),
    ),
    (
        "KeywordSentencesDataModule",
        lambda: KeywordSentencesDataModule(max_length=NAN),
        ValueError,
        ("`max_length`", "nan"),
    ),
    (
        "KeywordSentencesDataModule",
        lambda: KeywordSentencesDataModule(test_split="x"),
        ValueError,
        ("`test_split`", "'x'"),
    ),
    (
        "KeywordSentencesDataModule",
        lambda: KeywordSentencesDataModule(num_workers=-1),
        ValueError,
        ("`num_workers`", "-1"),
    ),
    ("keyword_sentences", lambda: keyword_sentences(0), ValueError, ("`n`", "0")),
    (
        "keyword_sentences",
        lambda: keyword_sentences(3, decoy="always"),
        ValueError,
        ("`decoy`", "'always'"),
    ),
]


@pytest.mark.parametrize(
    ("entry", "call", "error", "words"),
    TABLE,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(TABLE)],
)
def test_bad_constructor_argument_is_named(
    entry: str, call: Any, error: type, words: tuple
) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{entry}: {word!r} missing from {message!r}"


# ---------------------------------------------------------------------- bad batches in the steps
def _digits(n: int = 4, nan_row: int | None = None, value: float = NAN) -> torch.Tensor:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(n))
    if nan_row is not None:
        x[nan_row, 0, 3, 3] = value
    return x


def _concepts(n: int = 4, nan_row: int | None = None) -> torch.Tensor:
    c = torch.randint(0, 2, (n, 3), generator=torch.Generator().manual_seed(n)).float()
    if nan_row is not None:
        c[nan_row, 1] = NAN
    return c


def _second_batch(module: Any, step: str, good: Any, bad: Any) -> Any:
    """A clean first batch, then the bad one: every batch is checked, not only the first."""
    getattr(module, step)(good, 0)
    return getattr(module, step)(bad, 1)


Y4 = torch.tensor([0, 1, 2, 3])
STEP_TABLE: list[tuple[str, Any, type[Exception], tuple[str, ...]]] = [
    (
        "Classifier.training_step",
        lambda: Classifier().training_step((_digits(nan_row=2), Y4), 0),
        ValueError,
        ("`batch`", "NaN", "row 2"),
    ),
    (
        "Classifier.training_step",
        lambda: Classifier().training_step((_digits(nan_row=1, value=INF), Y4), 0),
        ValueError,
        ("`batch`", "inf", "row 1"),
    ),
    (
        "Classifier.training_step",
        lambda: _second_batch(
            Classifier(), "training_step", (_digits(), Y4), (_digits(), torch.tensor([0, 1, 10, 3]))
        ),
        ValueError,
        ("labels", "10", "[0, 9]"),
    ),
    (
        "Classifier.validation_step",
        lambda: _second_batch(
            Classifier(),
            "validation_step",
            (_digits(), Y4),
            (_digits(), torch.tensor([0, -1, 2, 3])),
        ),
        ValueError,
        ("labels", "-1"),
    ),
    (
        "Classifier.training_step",
        lambda: Classifier().training_step((_digits(0), Y4[:0]), 0),
        ValueError,
        ("`batch`", "empty"),
    ),
    (
        "Classifier.predict_step",
        lambda: Classifier().predict_step((_digits(nan_row=3), Y4), 0),
        ValueError,
        ("`batch`", "NaN", "row 3"),
    ),
    (
        "AutoEncoder.training_step",
        lambda: AutoEncoder().training_step((_digits(nan_row=0), Y4), 0),
        ValueError,
        ("`batch`", "NaN", "row 0"),
    ),
    (
        "AutoEncoder.validation_step",
        lambda: AutoEncoder().validation_step(_digits(0), 0),
        ValueError,
        ("`batch`", "empty"),
    ),
    (
        "AutoEncoder.training_step",
        lambda: AutoEncoder(loss="bce").training_step(_digits() * 3, 0),
        ValueError,
        ("`batch`", "[0, 1]", "loss='bce'"),
    ),
    (
        "AutoEncoder.predict_step",
        lambda: AutoEncoder().predict_step(_digits(nan_row=1), 0),
        ValueError,
        ("`batch`", "NaN", "row 1"),
    ),
    (
        "VariationalAutoEncoder.training_step",
        lambda: VariationalAutoEncoder().training_step(_digits(nan_row=2), 0),
        ValueError,
        ("`batch`", "NaN", "row 2"),
    ),
    (
        "LogicExplainer.training_step",
        lambda: _logic().training_step((_concepts(nan_row=1), torch.tensor([0, 1, 1, 0])), 0),
        ValueError,
        ("`batch`", "NaN", "row 1"),
    ),
    (
        "LogicExplainer.training_step",
        lambda: _second_batch(
            _logic(),
            "training_step",
            (_concepts(), torch.tensor([0, 1, 1, 0])),
            (_concepts(), torch.tensor([0, 1, 2, 0])),
        ),
        ValueError,
        ("labels", "2", "[0, 1]"),
    ),
    (
        "LogicExplainer.training_step",
        lambda: _logic(task="multilabel").training_step((_concepts(), torch.full((4, 2), 2.0)), 0),
        ValueError,
        ("targets", "[0, 1]", "2.0"),
    ),
    (
        "LogicExplainer.validation_step",
        lambda: _logic(task="multilabel").validation_step(
            (_concepts(), torch.tensor([[0.0, NAN]] * 4)), 0
        ),
        ValueError,
        ("labels", "NaN"),
    ),
    (
        "MLPLogicExplainer.predict_step",
        lambda: _mlp_logic().predict_step((_concepts(nan_row=0), torch.zeros(4)), 0),
        ValueError,
        ("`batch`", "NaN", "row 0"),
    ),
]


@pytest.mark.parametrize(
    ("entry", "call", "error", "words"),
    STEP_TABLE,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(STEP_TABLE)],
)
def test_bad_batch_is_refused_before_the_loss(
    entry: str, call: Any, error: type, words: tuple
) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{entry}: {word!r} missing from {message!r}"
