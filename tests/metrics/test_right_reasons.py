"""Right-reasons score: metric vs functional twin vs a plain reference."""

from __future__ import annotations

import pytest
import torch

from lightning_xai.metrics import RightReasonsScore
from lightning_xai.metrics.functional import right_reasons_score


def _reference(grads: torch.Tensor, mask: torch.Tensor) -> float:
    shares = []
    for g, m in zip(grads.tolist(), mask.expand_as(grads).tolist()):
        flat_g = torch.tensor(g).flatten().tolist()
        flat_m = torch.tensor(m).flatten().tolist()
        total = sum(abs(v) for v in flat_g)
        inside = sum(abs(v) * float(w) for v, w in zip(flat_g, flat_m))
        shares.append(inside / total if total > 0 else 0.0)
    return sum(shares) / len(shares)


def _batch(seed: int, n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(n, 2, 3, 3, generator=g)
    grads[0] = 0.0  # zero gradient scores 0
    mask = torch.rand(n, 2, 3, 3, generator=g) < 0.4
    mask[-1] = False  # empty mask scores 0
    return grads, mask


def test_functional_matches_reference() -> None:
    grads, mask = _batch(0)
    assert right_reasons_score(grads, mask).item() == pytest.approx(
        _reference(grads, mask), abs=1e-6
    )
    soft = mask.float() * 0.5
    assert right_reasons_score(grads, soft).item() == pytest.approx(
        _reference(grads, soft), abs=1e-6
    )


def test_bounds() -> None:
    grads = torch.randn(3, 4)
    assert right_reasons_score(grads, torch.ones(3, 4)).item() == pytest.approx(1.0)
    assert right_reasons_score(grads, torch.zeros(3, 4, dtype=torch.bool)).item() == 0.0


def test_metric_accumulates_like_the_functional_on_all_samples() -> None:
    metric = RightReasonsScore()
    batches = [_batch(seed, n) for seed, n in [(1, 5), (2, 9), (3, 2)]]
    for grads, mask in batches:
        metric.update(grads, mask)
    all_grads = torch.cat([b[0] for b in batches])
    all_masks = torch.cat([b[1] for b in batches])
    torch.testing.assert_close(metric.compute(), right_reasons_score(all_grads, all_masks))
    metric.reset()
    metric.update(*batches[0])
    torch.testing.assert_close(metric.compute(), right_reasons_score(*batches[0]))


def test_states_reduce_by_sum_across_processes() -> None:
    """merge_state applies each state's dist_reduce_fx, as a DDP sync would."""
    (g1, m1), (g2, m2) = _batch(4), _batch(5, 3)
    rank0, rank1 = RightReasonsScore(), RightReasonsScore()
    rank0.update(g1, m1)
    rank1.update(g2, m2)
    assert rank0._reductions["share_sum"].__name__ == "dim_zero_sum"
    rank0.merge_state(rank1)
    expected = right_reasons_score(torch.cat([g1, g2]), torch.cat([m1, m2]))
    torch.testing.assert_close(rank0.compute(), expected)


def test_bad_mask_raises() -> None:
    with pytest.raises(ValueError, match="`mask` has shape"):
        right_reasons_score(torch.randn(2, 3), torch.ones(2, 4))
    with pytest.raises(TypeError, match="int64"):
        RightReasonsScore().update(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.long))


def test_per_token_masks_broadcast_over_the_embedding() -> None:
    g = torch.Generator().manual_seed(3)
    grads = torch.randn(5, 7, 4, generator=g)  # gradients at an embedding (N, T, E)
    tokens = torch.rand(5, 7, generator=g) < 0.3  # one value per token (N, T)
    expected = _reference(grads, tokens[..., None])
    assert right_reasons_score(grads, tokens).item() == pytest.approx(expected, rel=1e-6)
    metric = RightReasonsScore()
    metric.update(grads, tokens)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"`mask` has shape \(5, 6\)"):
        right_reasons_score(grads, tokens[:, :6])
