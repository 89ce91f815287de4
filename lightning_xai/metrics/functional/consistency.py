r"""Consistency checks of label-free explanations of a representation.

**Feature-importance consistency.** If an attribution says which features build the
representation :math:`f(x)`, hiding those features should move :math:`f(x)` more than hiding
as many random ones. For each example, the ``k`` features with the largest absolute
attribution are replaced by a baseline (:math:`x_{\text{top}}`), and so are ``k`` features drawn
at random (:math:`x_{\text{rand}}`):

.. math::

    \delta_{\text{top}} = \lVert f(x) - f(x_{\text{top}}) \rVert_2, \qquad
    \delta_{\text{rand}} = \lVert f(x) - f(x_{\text{rand}}) \rVert_2,

averaged over examples; the ratio :math:`\bar\delta_{\text{top}} / \bar\delta_{\text{rand}}`
is above 1 for a consistent attribution. Features are the elements of an example
(``x[i].flatten()``).

**Example-importance consistency.** The share of each test example's ``k`` most important
training examples that carry the test example's label, averaged over test examples. Labels are
used for this evaluation only, never by the explanation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from lightning_xai.utilities.tensor_checks import (
    check_finite_rows,
    check_not_empty,
    check_tensor,
)
from lightning_xai.utilities.validation import check_finite
from lightning_xai.utilities.validation import check_positive_int as _check_positive

__all__ = ["example_consistency", "feature_consistency"]

Encoder = Callable[[Tensor], Tensor]


def _check_baseline(baseline: object) -> None:
    """A finite scalar, or a finite tensor shaped like one example."""
    if isinstance(baseline, Tensor):
        check_finite_rows("baseline", baseline.detach().reshape(1, -1))
    else:
        check_finite("baseline", baseline)


def _encoded(encoder: Encoder, inputs: Tensor, what: str) -> Tensor:
    """``encoder(inputs)`` flattened per example, refused when it is not finite."""
    latent = encoder(inputs)
    if not isinstance(latent, Tensor) or len(latent) != len(inputs):
        raise ValueError(
            f"`encoder` must return one representation per example (a tensor with "
            f"{len(inputs)} rows), got {type(latent).__name__} "
            f"{tuple(latent.shape) if isinstance(latent, Tensor) else ''}."
        )
    check_finite_rows(
        "encoder",
        latent.flatten(1),
        f"its representation of the {what} is not finite; check the encoder's weights and "
        "the baseline.",
    )
    return latent.flatten(1)


def _mask_features(inputs: Tensor, positions: Tensor, baseline: float | Tensor) -> Tensor:
    """``inputs`` with the flat feature ``positions`` (``(n, k)``) replaced by ``baseline``."""
    flat = inputs.flatten(1)
    base = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device)
    base = base.expand_as(inputs).flatten(1) if base.ndim else base.expand_as(flat)
    return flat.scatter(1, positions, base.gather(1, positions)).reshape(inputs.shape)


def _feature_consistency_update(
    encoder: Encoder,
    inputs: Tensor,
    attributions: Tensor,
    k: int,
    baseline: float | Tensor,
    generator: torch.Generator | None,
    n_random: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Sums of top-k and random-k latent shifts, and the number of examples."""
    check_tensor("inputs", inputs)
    check_tensor("attributions", attributions)
    if attributions.shape != inputs.shape:
        raise ValueError(
            f"`attributions` has shape {tuple(attributions.shape)} but `inputs` has "
            f"{tuple(inputs.shape)}; pass one attribution per input feature."
        )
    check_not_empty("inputs", inputs)
    check_finite_rows("inputs", inputs.detach())
    check_finite_rows("attributions", attributions.detach())
    n_features = inputs[0].numel()
    if k > n_features:
        raise ValueError(
            f"`k`={k} exceeds the {n_features} features of an example; pass k <= {n_features}."
        )
    inputs = inputs.detach()
    with torch.no_grad():
        latent = _encoded(encoder, inputs, "inputs")
        top = attributions.detach().flatten(1).abs().topk(k, dim=1).indices

        def shift(positions: Tensor) -> Tensor:
            masked = _encoded(encoder, _mask_features(inputs, positions, baseline), "masked inputs")
            return (latent - masked).norm(dim=1).to(torch.float64)

        top_shift = shift(top)
        random_shift = torch.zeros_like(top_shift)
        for _ in range(n_random):
            noise = torch.rand(len(inputs), n_features, generator=generator)
            random_shift += shift(noise.topk(k, dim=1).indices.to(inputs.device))
    count = torch.tensor(len(inputs), dtype=torch.long, device=top_shift.device)
    return top_shift.sum(), random_shift.sum() / n_random, count


def _feature_consistency_compute(
    top_sum: Tensor, random_sum: Tensor, count: Tensor
) -> dict[str, Tensor]:
    """Mean shifts and their ratio (NaN, with a warning, where undefined)."""
    n = count.to(torch.float64)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=top_sum.device)
    top = top_sum / n if int(count) else nan
    rand = random_sum / n if int(count) else nan
    if int(count) and not float(rand) > 0:
        warnings.warn(
            "Feature consistency: the mean latent shift under random masking (`random_shift`) "
            "is 0, so `ratio` is undefined (NaN): masking moves no representation. The encoder "
            "may be constant, or the baseline equal to the masked values; pick another "
            "`baseline` or check the encoder.",
            UserWarning,
            stacklevel=3,
        )
    ratio = top / rand if int(count) and float(rand) > 0 else nan
    return {"top_shift": top.float(), "random_shift": rand.float(), "ratio": ratio.float()}


def feature_consistency(
    encoder: Encoder,
    inputs: Tensor,
    attributions: Tensor,
    k: int = 4,
    baseline: float | Tensor = 0.0,
    n_random: int = 1,
    seed: int | None = 0,
) -> dict[str, Tensor]:
    """Latent shift when the top-``k`` attributed features are masked, against ``k`` random ones.

    Args:
        encoder: callable from inputs to representations (e.g. ``autoencoder.encode``).
        inputs: ``(n, ...)`` examples.
        attributions: feature importance, same shape as ``inputs`` (its absolute value ranks
            the features).
        k: number of features masked per example.
        baseline: value replacing masked features: a scalar or a tensor shaped like one example.
        n_random: random draws averaged for the random baseline.
        seed: seed of the random features (``None``: the global generator).

    Returns:
        ``{"top_shift", "random_shift", "ratio"}``: mean latent shifts and
        ``top_shift / random_shift`` (above 1: consistent).

    Example:
        >>> encoder = lambda x: x[:, :2] * 10  # only the first two features matter
        >>> x = torch.rand(16, 8)
        >>> attr = torch.tensor([5.0, 4.0, 0, 0, 0, 0, 0, 0]).expand(16, 8)
        >>> out = feature_consistency(encoder, x, attr, k=2)
        >>> bool(out["ratio"] > 2)
        True
    """
    _check_positive("k", k)
    _check_positive("n_random", n_random)
    _check_baseline(baseline)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sums = _feature_consistency_update(
        encoder, inputs, attributions, k, baseline, generator, n_random
    )
    return _feature_consistency_compute(*sums)


def _example_consistency_update(
    preds: Tensor, test_labels: Tensor, train_labels: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Sum over test examples of the top-``k`` label agreement, and the number of test examples."""
    for name, value in (
        ("preds", preds),
        ("test_labels", test_labels),
        ("train_labels", train_labels),
    ):
        check_tensor(name, value)
        check_not_empty(name, value)
        check_finite_rows(name, value.detach())
    if preds.ndim != 2:
        raise ValueError(
            f"`preds` must be (n_test, n_train) scores or (n_test, >=k) ranked indices, got shape "
            f"{tuple(preds.shape)}."
        )
    if len(test_labels) != len(preds):
        raise ValueError(
            f"`test_labels` has {len(test_labels)} entries for {len(preds)} rows of `preds`."
        )
    if preds.is_floating_point():
        if preds.shape[1] != len(train_labels):
            raise ValueError(
                f"`preds` scores have {preds.shape[1]} columns but `train_labels` has "
                f"{len(train_labels)} entries; pass one score per training example."
            )
        if k > preds.shape[1]:
            raise ValueError(f"`k`={k} exceeds the {preds.shape[1]} training examples.")
        top = preds.detach().topk(k, dim=1).indices
    else:
        if k > preds.shape[1]:
            raise ValueError(
                f"`k`={k} exceeds the {preds.shape[1]} ranked indices per row of `preds`."
            )
        ranked = preds[:, :k]
        low, high = int(ranked.min()), int(ranked.max())
        if low < 0 or high >= len(train_labels):
            bad = low if low < 0 else high
            raise ValueError(
                f"`preds` holds the training index {bad}, but there are {len(train_labels)} "
                f"training examples; ranked indices must lie in [0, {len(train_labels) - 1}] "
                "(a negative index would silently wrap around)."
            )
        top = preds[:, :k].long()
    train_labels = train_labels.to(top.device)
    agree = (train_labels[top] == test_labels.to(top.device)[:, None]).to(torch.float64).mean(1)
    return agree.sum(), torch.tensor(len(agree), dtype=torch.long, device=agree.device)


def _example_consistency_compute(agree_sum: Tensor, count: Tensor) -> Tensor:
    """Mean agreement; NaN when there were no test examples."""
    if int(count) == 0:
        return torch.tensor(float("nan"), device=agree_sum.device)
    return (agree_sum / count).float()


def example_consistency(
    preds: Tensor, test_labels: Tensor, train_labels: Tensor, k: int = 10
) -> Tensor:
    """Share of each test example's top-``k`` training examples that share its label.

    Args:
        preds: ``(n_test, n_train)`` importance scores (higher: more important), or
            ``(n_test, >=k)`` integer indices of training examples, most important first (e.g.
            ``TopKResult.indices``, where ties are already broken).
        test_labels: ``(n_test,)`` labels of the test examples.
        train_labels: ``(n_train,)`` labels of the training examples.
        k: number of top examples per test example.

    Returns:
        The mean share, in [0, 1].

    Example:
        >>> scores = torch.tensor([[0.9, 0.1, 0.8], [0.2, 0.7, 0.6]])
        >>> example_consistency(scores, torch.tensor([0, 1]), torch.tensor([0, 1, 1]), k=2)
        tensor(0.7500)
    """
    _check_positive("k", k)
    return _example_consistency_compute(
        *_example_consistency_update(preds, test_labels, train_labels, k)
    )
