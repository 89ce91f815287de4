"""A tabular concept dataset from scikit-learn's bundled breast cancer data."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_xai.data.concept_digits import ConceptSplitsDataModule

__all__ = ["ConceptTabularDataModule"]

#: Concept names and the mean-value feature (column of the data) each one thresholds.
_CONCEPTS: tuple[tuple[str, int], ...] = (
    ("large_radius", 0),
    ("rough_texture", 1),
    ("large_perimeter", 2),
    ("large_area", 3),
    ("high_smoothness", 4),
    ("high_compactness", 5),
    ("high_concavity", 6),
    ("many_concave_points", 7),
    ("high_symmetry", 8),
    ("high_fractal_dimension", 9),
)


class ConceptTabularDataModule(ConceptSplitsDataModule):
    """Breast cancer diagnosis (569 tumours, 30 features) with ten named concepts.

    Concept ``j`` says whether the tumour's mean value of a cell-nucleus measurement (radius,
    texture, perimeter, area, smoothness, compactness, concavity, concave points, symmetry,
    fractal dimension) lies above that measurement's median over the training rows. Inputs are
    all 30 features, standardised with training statistics; the task is ``malignant`` /
    ``benign``. Batches are ``(x, concepts, y)`` with ``x`` of shape ``(30,)``.

    Args:
        concept_noise: probability of flipping each training annotation.
        batch_size: batch size of every loader.
        val_fraction: share of the rows held out for validation.
        test_fraction: share held out for testing.
        seed: seed of the split and of the annotation noise.
        num_workers: ``DataLoader`` workers.

    Example:
        >>> dm = ConceptTabularDataModule(batch_size=16)
        >>> dm.setup()
        >>> x, c, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), tuple(c.shape), dm.class_names
        ((16, 30), (16, 10), ('malignant', 'benign'))
    """

    def __init__(
        self,
        concept_noise: float = 0.0,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, val_fraction, test_fraction, seed, num_workers, concept_noise)
        self.save_hyperparameters()
        self.concept_names = tuple(name for name, _ in _CONCEPTS)
        self.class_names = ("malignant", "benign")
        self.feature_names: tuple[str, ...] = ()
        self._train_index: Tensor | None = None

    def rows(self) -> tuple[Tensor, Tensor, Tensor]:
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        self.feature_names = tuple(str(n) for n in bunch.feature_names)
        x = torch.tensor(bunch.data, dtype=torch.float32)
        y = torch.tensor(bunch.target, dtype=torch.int64)
        return x, x[:, [column for _, column in _CONCEPTS]], y

    def transform(self, x: Tensor, train: Tensor) -> Tensor:
        return x

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        super().setup(stage)
        # concepts threshold the raw measurements at training medians; inputs are standardised
        train_x = self.train_dataset.x
        medians = train_x[:, [c for _, c in _CONCEPTS]].median(dim=0).values
        mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp_min(1e-8)
        for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
            raw = dataset.x[:, [c for _, c in _CONCEPTS]]
            clean = (raw > medians).float()
            if dataset is self.train_dataset:
                flipped = dataset.flipped
                dataset.clean_concepts = clean
                dataset.y = torch.where(flipped, 1.0 - clean, clean)
            else:
                dataset.y = clean
            dataset.x = (dataset.x - mean) / std
