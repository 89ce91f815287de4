"""Boolean-concept datasets with known ground-truth rules, as LightningDataModules.

Batches are ``(concepts, target)`` (trigonometry adds the raw features as a third tensor).
Concepts are 0/1 floats. Every datamodule knows its ``n_concepts``, ``n_classes``, ``task``,
``concept_names``, ``class_names`` and the true rules (``rules``), so explanations can be
checked exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import sympy
import torch
from torch import Tensor

from lightning_xai.data.datasets import SplitLoaders, TensorPairDataset
from lightning_xai.data.digits import check_fraction, check_num_workers, flip_labels, split_indices
from lightning_xai.logic.rule import Rule, parse_rule

__all__ = ["DNFDataModule", "TrigonometryDataModule", "XORDataModule", "random_dnf"]


def _positive_int(name: str, value: int, smallest: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ValueError(f"`{name}` must be an int >= {smallest}, got {value!r}.")


class _ConceptDataModule(SplitLoaders, pl.LightningDataModule):
    """Seeded generation, train/val/test split, label noise on the training split, loaders."""

    task = "multiclass"

    def __init__(
        self,
        n_samples: int,
        label_noise: float,
        batch_size: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        _positive_int("n_samples", n_samples, smallest=10)
        _positive_int("batch_size", batch_size)
        check_num_workers(num_workers)
        check_fraction("label_noise", label_noise, high=0.5)
        split_indices(10, val_fraction, test_fraction, seed)  # validate the fractions early
        self.n_samples = n_samples
        self.label_noise = label_noise
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.train_dataset: TensorPairDataset | None = None
        self.val_dataset: TensorPairDataset | None = None
        self.test_dataset: TensorPairDataset | None = None

    # subclasses define these
    concept_names: tuple[str, ...]
    class_names: tuple[str, ...]
    rules: list[Rule]

    @property
    def n_concepts(self) -> int:
        """Number of concept columns."""
        return len(self.concept_names)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def generate(self, generator: torch.Generator) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """All rows: concepts, clean targets and extra tensors."""
        raise NotImplementedError

    def _noisy(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.task == "multiclass":
            return flip_labels(y, self.label_noise, self.n_classes, self.seed)
        g = torch.Generator().manual_seed(self.seed + 1)
        flipped = torch.rand(y.shape, generator=g) < self.label_noise
        return torch.where(flipped, 1.0 - y, y), flipped

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        concepts, y, extra = self.generate(torch.Generator().manual_seed(self.seed))
        train, val, test = split_indices(
            len(concepts), self.val_fraction, self.test_fraction, self.seed
        )
        noisy, flipped = self._noisy(y[train])
        self.train_dataset = TensorPairDataset(concepts[train], noisy, *(e[train] for e in extra))
        self.train_dataset.flipped = flipped
        self.train_dataset.clean_y = y[train]
        self.val_dataset = TensorPairDataset(concepts[val], y[val], *(e[val] for e in extra))
        self.test_dataset = TensorPairDataset(concepts[test], y[test], *(e[test] for e in extra))


def _random_bits(n: int, d: int, generator: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (n, d), generator=generator).float()


class XORDataModule(_ConceptDataModule):
    """XOR of two Boolean concepts, optionally padded with irrelevant noise concepts.

    Concepts ``c0, c1, …`` are fair coin flips; the class is ``c0 XOR c1`` (class 1 when exactly
    one is true), a two-class ``multiclass`` task. The true rule of class 1 is
    ``(c0 ∧ ¬c1) ∨ (¬c0 ∧ c1)``.

    Args:
        n_samples: rows generated (before the split).
        n_noise_concepts: extra concepts that do not affect the class.
        label_noise: share of training labels flipped.
        batch_size: batch size of every loader.
        val_fraction: share of rows held out for validation.
        test_fraction: share of rows held out for testing.
        seed: seed of the data, the split and the label noise.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = XORDataModule(n_samples=100, n_noise_concepts=3)
        >>> dm.setup()
        >>> c, y = dm.train_dataset[0]
        >>> c.shape, bool(y == (c[0] != c[1]))
        (torch.Size([5]), True)
        >>> str(dm.rules[1])
        '(c0 & ~c1) | (~c0 & c1)'
    """

    def __init__(
        self,
        n_samples: int = 1000,
        n_noise_concepts: int = 0,
        label_noise: float = 0.0,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            n_samples, label_noise, batch_size, val_fraction, test_fraction, seed, num_workers
        )
        _positive_int("n_noise_concepts", n_noise_concepts, smallest=0)
        self.save_hyperparameters()
        self.n_noise_concepts = n_noise_concepts
        self.concept_names = tuple(f"c{j}" for j in range(2 + n_noise_concepts))
        self.class_names = ("y0", "y1")
        self.rules = [
            Rule.from_string(text, self.concept_names, k)
            for k, text in enumerate(["(c0 & c1) | (~c0 & ~c1)", "(c0 & ~c1) | (~c0 & c1)"])
        ]

    def generate(self, generator: torch.Generator) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        concepts = _random_bits(self.n_samples, self.n_concepts, generator)
        return concepts, (concepts[:, 0] != concepts[:, 1]).long(), ()


class TrigonometryDataModule(_ConceptDataModule):
    """The trigonometry benchmark of logic explainer papers, with concepts as inputs.

    Three latent variables :math:`x, y, z \\sim \\mathcal{N}(0, 2^2)` give seven raw features
    (:math:`\\sin x + x`, :math:`\\cos x + x`, the same for :math:`y` and :math:`z`, and
    :math:`x^2 + y^2 + z^2`), three concepts (:math:`x > 0`, :math:`y > 0`, :math:`z > 0`)
    and the class :math:`x + y + z > 1` (two-class ``multiclass``). The concepts do not decide
    the class exactly: the best rule, majority of the class in each concept cell, is stored in
    ``rules``. Batches are ``(concepts, target, features)``.

    Args:
        n_samples: rows generated.
        label_noise: share of training labels flipped.
        batch_size: batch size of every loader.
        val_fraction: share of rows held out for validation.
        test_fraction: share of rows held out for testing.
        seed: seed of the data, the split and the label noise.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = TrigonometryDataModule(n_samples=200)
        >>> dm.setup()
        >>> [t.shape[-1] for t in dm.train_dataset[0][::2]]
        [3, 7]
    """

    concept_names = ("x_pos", "y_pos", "z_pos")
    class_names = ("y0", "y1")

    def __init__(
        self,
        n_samples: int = 1000,
        label_noise: float = 0.0,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            n_samples, label_noise, batch_size, val_fraction, test_fraction, seed, num_workers
        )
        self.save_hyperparameters()
        # two or more positive latents -> the sum exceeds 1 for most draws
        majority = "(x_pos & y_pos) | (x_pos & z_pos) | (y_pos & z_pos)"
        self.rules = [
            Rule(~parse_rule(majority, self.concept_names), self.concept_names, 0),
            Rule.from_string(majority, self.concept_names, 1),
        ]

    def generate(self, generator: torch.Generator) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        h = torch.randn(self.n_samples, 3, generator=generator) * 2.0
        x, y, z = h.unbind(dim=1)
        features = torch.stack(
            [
                torch.sin(x) + x,
                torch.cos(x) + x,
                torch.sin(y) + y,
                torch.cos(y) + y,
                torch.sin(z) + z,
                torch.cos(z) + z,
                x**2 + y**2 + z**2,
            ],
            dim=1,
        )
        concepts = (h > 0).float()
        return concepts, (h.sum(dim=1) > 1).long(), (features,)


def random_dnf(
    n_concepts: int,
    n_terms: int = 2,
    max_term_size: int = 3,
    generator: torch.Generator | None = None,
) -> sympy.logic.boolalg.Boolean:
    """A random DNF over ``c0 … c{n_concepts-1}``: ``n_terms`` terms of 1 to ``max_term_size``
    distinct literals with random signs.

    Example:
        >>> import torch
        >>> rule = random_dnf(6, n_terms=2, max_term_size=3, generator=torch.Generator().manual_seed(0))
        >>> len(rule.args) <= 2 and rule.free_symbols <= set(sympy.symbols("c0:6"))
        True
    """
    generator = generator or torch.Generator().manual_seed(0)
    symbols = sympy.symbols(f"c0:{n_concepts}")
    terms = []
    for _ in range(n_terms):
        size = int(torch.randint(1, min(max_term_size, n_concepts) + 1, (), generator=generator))
        chosen = torch.randperm(n_concepts, generator=generator)[:size].tolist()
        signs = torch.randint(0, 2, (size,), generator=generator).tolist()
        terms.append(sympy.And(*[symbols[j] if s else ~symbols[j] for j, s in zip(chosen, signs)]))
    return sympy.Or(*terms)


class DNFDataModule(_ConceptDataModule):
    """Classes defined by DNF rules over random Boolean concepts (a ``multilabel`` task).

    Concepts ``c0 … c{n_concepts-1}`` are fair coin flips; the target of class ``k`` is the
    truth of its rule, so classes may overlap and targets are ``(N, n_classes)`` 0/1 floats.
    Rules are given explicitly (``rules``, formula strings such as ``"(c0 & c1) | (c2 & ~c3)"``)
    or drawn at random (seeded) over the first ``n_concepts - n_noise_concepts`` concepts; the
    last ``n_noise_concepts`` concepts never matter.

    Args:
        n_concepts: number of concepts.
        n_classes: number of random rules (ignored when ``rules`` is given).
        rules: explicit DNF rules, one per class.
        n_samples: rows generated.
        n_noise_concepts: trailing concepts that random rules do not use.
        n_terms: terms per random rule.
        max_term_size: most literals per random term.
        label_noise: share of training targets flipped (independently per class).
        batch_size: batch size of every loader.
        val_fraction: share of rows held out for validation.
        test_fraction: share of rows held out for testing.
        seed: seed of the rules, the data, the split and the label noise.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = DNFDataModule(n_concepts=6, rules=["(c0 & c1) | ~c2", "c3 & ~c4"], n_samples=64)
        >>> dm.setup()
        >>> c, y = dm.train_dataset[0]
        >>> dm.n_classes, y.tolist() == [float(bool(c[0] and c[1]) or not c[2]), float(bool(c[3] and not c[4]))]
        (2, True)
    """

    task = "multilabel"

    def __init__(
        self,
        n_concepts: int = 20,
        n_classes: int = 3,
        rules: Sequence[str] | None = None,
        n_samples: int = 5000,
        n_noise_concepts: int = 0,
        n_terms: int = 2,
        max_term_size: int = 3,
        label_noise: float = 0.0,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            n_samples, label_noise, batch_size, val_fraction, test_fraction, seed, num_workers
        )
        _positive_int("n_concepts", n_concepts, smallest=1)
        _positive_int("n_terms", n_terms)
        _positive_int("max_term_size", max_term_size)
        _positive_int("n_noise_concepts", n_noise_concepts, smallest=0)
        if n_noise_concepts >= n_concepts:
            raise ValueError(
                f"`n_noise_concepts` ({n_noise_concepts}) must be smaller than `n_concepts` "
                f"({n_concepts}); rules need at least one concept."
            )
        self.save_hyperparameters()
        self.concept_names = tuple(f"c{j}" for j in range(n_concepts))
        if rules is not None:
            if isinstance(rules, str) or not rules:
                raise ValueError(f"`rules` must be a non-empty list of formulas, got {rules!r}.")
            try:
                exprs = [parse_rule(text, self.concept_names) for text in rules]
            except ValueError as err:
                raise ValueError(f"`rules`: {err}") from None
        else:
            _positive_int("n_classes", n_classes)
            g = torch.Generator().manual_seed(seed)
            informative = n_concepts - n_noise_concepts
            exprs = [random_dnf(informative, n_terms, max_term_size, g) for _ in range(n_classes)]
        self.class_names = tuple(f"y{k}" for k in range(len(exprs)))
        self.rules = [Rule(expr, self.concept_names, k) for k, expr in enumerate(exprs)]

    def generate(self, generator: torch.Generator) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        concepts = _random_bits(self.n_samples, self.n_concepts, generator)
        y = torch.stack([rule.evaluate(concepts) for rule in self.rules], dim=1).float()
        return concepts, y, ()
