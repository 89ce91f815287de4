"""scikit-learn's bundled digits with class-level concept annotations and tasks whose rule over
the concepts is known."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pytorch_lightning as pl
import torch
from torch import Tensor

from lightning_xai.data.datasets import SplitLoaders, TensorPairDataset
from lightning_xai.data.digits import load_digits_tensors, split_indices
from lightning_xai.logic.rule import Rule
from lightning_xai.utilities.validation import check_positive_int

__all__ = [
    "DIGIT_SHAPES",
    "ConceptDigitsDataModule",
    "ConceptSplitsDataModule",
    "digit_concepts",
    "flip_concepts",
]

ConceptSet = Literal["all", "shapes", "identity"]
DigitTask = Literal["digit", "parity", "prime", "geq5"]

#: Shape concepts of each digit class (class-level annotations of how the digits are drawn).
DIGIT_SHAPES: dict[str, tuple[int, ...]] = {
    "closed_loop": (0, 6, 8, 9),
    "two_loops": (8,),
    "vertical_stroke": (1, 4, 7),
    "horizontal_bar": (2, 4, 5, 7),
    "diagonal_stroke": (2, 7),
    "round_top": (0, 2, 3, 8, 9),
    "round_bottom": (0, 3, 5, 6, 8),
}

#: The tasks: class names and, per class, the digits that belong to it.
_TASKS: dict[str, tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]] = {
    "digit": (tuple(str(d) for d in range(10)), tuple((d,) for d in range(10))),
    "parity": (("odd", "even"), ((1, 3, 5, 7, 9), (0, 2, 4, 6, 8))),
    "prime": (("not_prime", "prime"), ((0, 1, 4, 6, 8, 9), (2, 3, 5, 7))),
    "geq5": (("below_5", "at_least_5"), ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))),
}


def digit_concepts(concepts: ConceptSet = "all") -> tuple[tuple[str, ...], Tensor]:
    """Concept names and the ``(10, k)`` 0/1 table of each digit class's concepts.

    ``"shapes"`` are :data:`DIGIT_SHAPES`; ``"identity"`` are ``digit_0`` … ``digit_9`` (one-hot);
    ``"all"`` are both.

    Example:
        >>> names, table = digit_concepts("shapes")
        >>> names[0], table[:, 0].nonzero().flatten().tolist()
        ('closed_loop', [0, 6, 8, 9])
    """
    if concepts not in ("all", "shapes", "identity"):
        raise ValueError(f"`concepts` must be 'all', 'shapes' or 'identity', got {concepts!r}.")
    names: list[str] = []
    columns: list[Tensor] = []
    if concepts in ("all", "shapes"):
        for name, digits in DIGIT_SHAPES.items():
            names.append(name)
            column = torch.zeros(10)
            column[list(digits)] = 1.0
            columns.append(column)
    if concepts in ("all", "identity"):
        for d in range(10):
            names.append(f"digit_{d}")
            columns.append(torch.eye(10)[d])
    return tuple(names), torch.stack(columns, dim=1)


def flip_concepts(concepts: Tensor, probability: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per-image annotation noise: flip each 0/1 concept with ``probability`` (seeded).

    Returns the noisy concepts and the Boolean mask of flipped entries.

    Example:
        >>> noisy, flipped = flip_concepts(torch.zeros(100, 4), 0.25, seed=0)
        >>> bool((noisy == flipped.float()).all()), 0.15 < flipped.float().mean().item() < 0.35
        (True, True)
    """
    if not 0.0 <= probability <= 0.5:
        raise ValueError(
            f"`concept_noise` must be in [0, 0.5] (the chance each annotation is flipped), got "
            f"{probability!r}."
        )
    g = torch.Generator().manual_seed(seed + 2)
    flipped = torch.rand(concepts.shape, generator=g) < probability
    return torch.where(flipped, 1.0 - concepts, concepts), flipped


class ConceptSplitsDataModule(SplitLoaders, pl.LightningDataModule):
    """Train/val/test ``(x, concepts, y)`` splits and their loaders; subclasses make the rows.

    Attributes set by subclasses: ``concept_names``, ``class_names``.
    """

    concept_names: tuple[str, ...]
    class_names: tuple[str, ...]

    def __init__(
        self,
        batch_size: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        num_workers: int,
        concept_noise: float,
    ) -> None:
        super().__init__()
        check_positive_int("batch_size", batch_size)
        split_indices(10, val_fraction, test_fraction, seed)  # validate the fractions early
        flip_concepts(torch.zeros(1, 1), concept_noise, seed)  # validate the noise early
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.concept_noise = concept_noise
        self.train_dataset: TensorPairDataset | None = None
        self.val_dataset: TensorPairDataset | None = None
        self.test_dataset: TensorPairDataset | None = None

    @property
    def n_concepts(self) -> int:
        """Number of concepts."""
        return len(self.concept_names)

    @property
    def n_classes(self) -> int:
        """Number of task classes."""
        return len(self.class_names)

    def rows(self) -> tuple[Tensor, Tensor, Tensor]:
        """All rows: inputs, concepts, labels (implemented by subclasses)."""
        raise NotImplementedError

    def transform(self, x: Tensor, train: Tensor) -> Tensor:
        """Inputs as the model sees them, given the training indices (e.g. standardised)."""
        return x

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        x, concepts, y = self.rows()
        train, val, test = split_indices(len(x), self.val_fraction, self.test_fraction, self.seed)
        x = self.transform(x, train)
        noisy, flipped = flip_concepts(concepts[train], self.concept_noise, self.seed)
        self.train_dataset = TensorPairDataset(x[train], noisy, y[train])
        self.train_dataset.clean_concepts = concepts[train]
        self.train_dataset.flipped = flipped
        self.val_dataset = TensorPairDataset(x[val], concepts[val], y[val])
        self.test_dataset = TensorPairDataset(x[test], concepts[test], y[test])


class ConceptDigitsDataModule(ConceptSplitsDataModule):
    """The bundled 8x8 digits with class-level concept annotations: batches ``(x, concepts, y)``.

    ``x`` is ``(1, 8, 8)`` in [0, 1]; ``concepts`` are 0/1 floats (:func:`digit_concepts`: the
    shape concepts of :data:`DIGIT_SHAPES` and/or the digit identity); ``y`` is the task label.
    The tasks' rules over the identity concepts are known and kept in :attr:`rules`:

    * ``"digit"``: the digit itself (10 classes);
    * ``"parity"``: ``odd``/``even`` (``even = digit_0 ∨ digit_2 ∨ digit_4 ∨ digit_6 ∨ digit_8``);
    * ``"prime"``: ``not_prime``/``prime`` (2, 3, 5, 7);
    * ``"geq5"``: ``below_5``/``at_least_5``.

    Annotations are per class; ``concept_noise`` flips each training annotation independently
    (per image) with that probability, as imperfect annotators would (``train_dataset.flipped``
    marks them, ``train_dataset.clean_concepts`` keeps the truth). Validation and test
    annotations stay clean.

    Args:
        task: ``"digit"``, ``"parity"``, ``"prime"`` or ``"geq5"``.
        concept_set: ``"all"`` (shapes and identity), ``"shapes"`` or ``"identity"``.
        concept_noise: probability of flipping each training annotation.
        batch_size: batch size of every loader.
        val_fraction: share of the images held out for validation.
        test_fraction: share held out for testing.
        seed: seed of the split and of the annotation noise.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = ConceptDigitsDataModule(task="parity", batch_size=8)
        >>> dm.setup()
        >>> x, c, y = next(iter(dm.val_dataloader()))
        >>> tuple(x.shape), tuple(c.shape), dm.class_names
        ((8, 1, 8, 8), (8, 17), ('odd', 'even'))
        >>> str(dm.rules[1])
        'digit_0 | digit_2 | digit_4 | digit_6 | digit_8'
    """

    def __init__(
        self,
        task: DigitTask = "digit",
        concept_set: ConceptSet = "all",
        concept_noise: float = 0.0,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, val_fraction, test_fraction, seed, num_workers, concept_noise)
        if task not in _TASKS:
            raise ValueError(f"`task` must be one of {tuple(_TASKS)}, got {task!r}.")
        self.save_hyperparameters()
        self.task = task
        self.concept_set = concept_set
        self.concept_names, self.class_concepts = digit_concepts(concept_set)
        self.class_names, members = _TASKS[task]
        self.class_of_digit = torch.zeros(10, dtype=torch.long)
        for k, digits in enumerate(members):
            self.class_of_digit[list(digits)] = k
        self.rules = [
            Rule.from_string(
                _identity_rule(digits, concept_set, self.concept_names), self.concept_names, k, name
            )
            for k, (name, digits) in enumerate(zip(self.class_names, members))
        ]

    def rows(self) -> tuple[Tensor, Tensor, Tensor]:
        x, digit = load_digits_tensors()
        return x, self.class_concepts[digit], self.class_of_digit[digit]


def _identity_rule(digits: Sequence[int], concepts: str, names: Sequence[str]) -> str:
    if concepts != "shapes":
        return " | ".join(f"digit_{d}" for d in digits)
    # shape concepts only: each digit is the conjunction of its shape profile
    _, table = digit_concepts("shapes")
    terms = []
    for d in digits:
        literals = [n if table[d, j] else f"~{n}" for j, n in enumerate(names)]
        terms.append("(" + " & ".join(literals) + ")")
    return " | ".join(terms)
