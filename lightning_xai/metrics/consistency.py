"""Consistency checks of label-free explanations as ``torchmetrics`` metrics (DDP-reducible).

See :mod:`lightning_xai.metrics.functional.consistency` for the definitions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_xai.metrics.functional.consistency import (
    Encoder,
    _check_baseline,
    _check_positive,
    _example_consistency_compute,
    _example_consistency_update,
    _feature_consistency_compute,
    _feature_consistency_update,
)

__all__ = ["ExampleConsistency", "FeatureConsistency"]


class FeatureConsistency(Metric):
    r"""Latent shift when the top-``k`` attributed features are masked, against ``k`` random ones.

    ``update(inputs, attributions)`` masks, per example, the ``k`` features of largest
    ``|attribution|`` and ``k`` random features with ``baseline``, and accumulates how far the
    representation moves. ``compute()`` returns ``{"top_shift", "random_shift", "ratio"}``: the
    mean shifts over every example seen (on every process) and their ratio, above 1 for a
    consistent attribution. See :func:`~lightning_xai.metrics.functional.feature_consistency`.

    Args:
        encoder: callable from inputs to representations (e.g. ``autoencoder.encode``). It is
            not part of the metric's state (not moved by ``.to`` nor saved in ``state_dict``).
        k: number of features masked per example.
        baseline: value replacing masked features: a scalar or a tensor shaped like one example.
        n_random: random draws averaged for the random baseline.
        seed: seed of the random features.

    Inputs, attributions and the encoder's representations are checked at each ``update``:
    NaN or inf and empty batches raise a ``ValueError`` naming the argument; a zero random
    shift (nothing moves the representation) gives a NaN ratio with a warning.

    Example:
        >>> metric = FeatureConsistency(lambda x: x[:, :2] * 10, k=2)
        >>> x = torch.rand(16, 8)
        >>> metric.update(x, torch.tensor([5.0, 4.0, 0, 0, 0, 0, 0, 0]).expand(16, 8))
        >>> bool(metric.compute()["ratio"] > 2)
        True
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    top_sum: Tensor
    random_sum: Tensor
    count: Tensor

    def __init__(
        self,
        encoder: Encoder,
        k: int = 4,
        baseline: float | Tensor = 0.0,
        n_random: int = 1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(encoder):
            raise TypeError(
                f"`encoder` must be callable (inputs -> representations), got {type(encoder).__name__}."
            )
        _check_positive("k", k)
        _check_positive("n_random", n_random)
        _check_baseline(baseline)
        # kept out of the module tree: the metric's state is its sums, not the encoder's weights
        object.__setattr__(self, "_encoder", encoder)
        self.k = k
        self.baseline = baseline
        self.n_random = n_random
        self._generator = torch.Generator().manual_seed(seed)
        for name in ("top_sum", "random_sum"):
            self.add_state(
                name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, inputs: Tensor, attributions: Tensor) -> None:
        """Add a batch of examples and their feature attributions (same shape)."""
        top, rand, count = _feature_consistency_update(
            self._encoder,
            inputs,
            attributions,
            self.k,
            self.baseline,
            self._generator,
            self.n_random,
        )
        self.top_sum += top.to(self.top_sum.device)
        self.random_sum += rand.to(self.random_sum.device)
        self.count += count.to(self.count.device)

    def compute(self) -> dict[str, Tensor]:
        """Mean top-k shift, mean random shift and their ratio."""
        return _feature_consistency_compute(self.top_sum, self.random_sum, self.count)


class ExampleConsistency(Metric):
    """Share of each test example's top-``k`` training examples that share its label.

    ``update(preds, test_labels, train_labels)`` takes ``(n_test, n_train)`` importance scores or
    ``(n_test, >=k)`` ranked training indices (e.g. ``TopKResult.indices``); ``compute()`` is the
    mean share over every test example seen (on every process). Labels serve this evaluation
    only. See :func:`~lightning_xai.metrics.functional.example_consistency`.

    Args:
        k: number of top training examples per test example.

    Example:
        >>> metric = ExampleConsistency(k=2)
        >>> metric.update(torch.tensor([[0, 2], [1, 2]]), torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
        >>> metric.compute()
        tensor(0.7500)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    agree_sum: Tensor
    count: Tensor

    def __init__(self, k: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_positive("k", k)
        self.k = k
        self.add_state(
            "agree_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, test_labels: Tensor, train_labels: Tensor) -> None:
        """Add the rankings of a batch of test examples."""
        agree, count = _example_consistency_update(preds, test_labels, train_labels, self.k)
        self.agree_sum += agree.to(self.agree_sum.device)
        self.count += count.to(self.count.device)

    def compute(self) -> Tensor:
        """Mean top-``k`` label agreement."""
        return _example_consistency_compute(self.agree_sum, self.count)
