from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

from lightning_xai.metrics import AttributionRankCorrelation, CompletenessGap
from lightning_xai.metrics.functional import attribution_rank_correlation, completeness_gap


def _reference_gap(attributions: torch.Tensor, delta: torch.Tensor) -> float:
    sums = attributions.reshape(len(attributions), -1).double().sum(1)
    return float((sums - delta.double()).abs().sum() / delta.double().abs().sum())


def test_completeness_gap_matches_the_formula_and_batches_accumulate() -> None:
    a, d = torch.randn(10, 3, 4), torch.randn(10)
    assert completeness_gap(a, d).item() == pytest.approx(_reference_gap(a, d), rel=1e-6)
    metric = CompletenessGap()
    for chunk_a, chunk_d in zip(a.split(3), d.split(3)):
        metric.update(chunk_a, chunk_d)
    assert metric.compute().item() == pytest.approx(_reference_gap(a, d), rel=1e-6)


def test_completeness_gap_is_zero_for_exact_attributions() -> None:
    a = torch.randn(4, 5)
    assert completeness_gap(a, a.sum(1)).item() == pytest.approx(0.0, abs=1e-6)


def test_completeness_gap_shape_errors() -> None:
    with pytest.raises(ValueError, match="one value per example"):
        completeness_gap(torch.randn(4, 5), torch.randn(3))


@pytest.mark.parametrize("ties", [False, True])
def test_rank_correlation_matches_scipy(ties: bool) -> None:
    a, b = torch.randn(6, 2, 5), torch.randn(6, 2, 5)
    if ties:
        a, b = a.round(), b.clamp(min=0)
    expected = [spearmanr(x.flatten().numpy(), y.flatten().numpy()).statistic for x, y in zip(a, b)]
    expected = [e for e in expected if not math.isnan(e)]
    got = attribution_rank_correlation(a, b).item()
    assert got == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    metric = AttributionRankCorrelation()
    metric.update(a[:2], b[:2])
    metric.update(a[2:], b[2:])
    assert metric.compute().item() == pytest.approx(got, abs=1e-6)


def test_rank_correlation_skips_constant_examples() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert attribution_rank_correlation(a, a).item() == pytest.approx(1.0)
    assert math.isnan(attribution_rank_correlation(a[1:], a[1:]).item())
    with pytest.raises(ValueError, match="same shape"):
        attribution_rank_correlation(a, a[:1])
