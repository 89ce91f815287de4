"""Interventions and concept networks checked against hand-computed results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_xai.concepts import (
    BottleneckNetwork,
    ConceptEmbedding,
    EmbeddingNetwork,
    concept_head,
    concept_loss,
    intervene,
    intervention_curves,
    intervention_mask,
    intervention_order,
    random_intervention,
)


def _cbm(head: str = "linear") -> BottleneckNetwork:
    return BottleneckNetwork(nn.Sequential(nn.Linear(6, 12), nn.ReLU()), 4, 3, head=head)


@pytest.mark.parametrize("head", ["linear", "mlp", "logic"])
def test_full_intervention_is_the_head_on_true_concepts(head: str) -> None:
    net = _cbm(head).eval()
    x, c = torch.randn(7, 6), torch.randint(0, 2, (7, 4)).float()
    got = intervene(net, x, c, which=1.0)
    torch.testing.assert_close(got, net.head(c))
    none = intervene(net, x, c, which=0)
    torch.testing.assert_close(none, net(x))


def test_index_intervention_replaces_only_those_columns() -> None:
    net = _cbm().eval()
    x, c = torch.randn(5, 6), torch.randint(0, 2, (5, 4)).float()
    probs = torch.sigmoid(net.concept_layer(net.encoder(x)))
    expected_input = probs.clone()
    expected_input[:, [0, 2]] = c[:, [0, 2]]
    torch.testing.assert_close(intervene(net, x, c, which={0, 2}), net.head(expected_input))


def test_uncertainty_order_matches_a_brute_force_sort() -> None:
    probs = torch.rand(20, 6)
    order = intervention_order(probs, "uncertainty")
    for row in range(20):
        expected = sorted(range(6), key=lambda j: (abs(float(probs[row, j]) - 0.5), j))
        assert order[row].tolist() == expected
    mask = intervention_mask(probs, 2, "uncertainty")
    assert mask.sum(dim=1).tolist() == [2] * 20
    assert bool(mask.gather(1, order[:, :2]).all())


def test_random_order_is_seeded_and_differs_between_rows() -> None:
    probs = torch.rand(50, 8)
    a, b = intervention_order(probs, "random", seed=3), intervention_order(probs, "random", seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, intervention_order(probs, "random", seed=4))
    assert len({tuple(r) for r in a.tolist()}) > 40
    assert intervention_mask(probs, 0.5, "random").sum(dim=1).eq(4).all()


def test_embedding_network_mixes_by_the_true_value() -> None:
    torch.manual_seed(1)
    net = EmbeddingNetwork(nn.Linear(5, 10), n_concepts=3, n_classes=2, embedding_size=4).eval()
    x, c = torch.randn(6, 5), torch.randint(0, 2, (6, 3)).float()
    emb = F.leaky_relu(net.embedding.embeddings(net.encoder(x))).view(6, 3, 2, 4)
    mixed = c[..., None] * emb[:, :, 0] + (1 - c[..., None]) * emb[:, :, 1]
    torch.testing.assert_close(intervene(net, x, c, which=3), net.head(mixed.flatten(1)))
    logits = net.embedding.score(emb.flatten(2)).squeeze(-1)
    torch.testing.assert_close(net.concept_outputs(x).concept_logits, logits)


def test_curves_start_at_the_plain_accuracy_and_end_at_the_true_concepts() -> None:
    net = _cbm().eval()
    x, c = torch.randn(40, 6), torch.randint(0, 2, (40, 4)).float()
    y = torch.randint(0, 3, (40,))
    curves = intervention_curves(net, x, c, y)
    plain = float((net(x).argmax(1) == y).float().mean())
    full = float((net.head(c).argmax(1) == y).float().mean())
    for curve in curves:
        assert curve.counts == [0, 1, 2, 3, 4]
        assert curve.accuracy[0] == pytest.approx(plain)
        assert curve.accuracy[-1] == pytest.approx(full)
        middle = intervene(net, x, c, which=2, strategy=curve.strategy)
        assert curve.accuracy[2] == pytest.approx(float((middle.argmax(1) == y).float().mean()))


def test_concept_loss_leaves_out_missing_annotations() -> None:
    logits = torch.randn(4, 3)
    targets = torch.tensor([[1.0, 0, float("nan")], [0, 1, 1], [float("nan")] * 3, [1, 1, 0]])
    known = ~targets.isnan()
    expected = F.binary_cross_entropy_with_logits(logits[known], targets[known])
    torch.testing.assert_close(concept_loss(logits, targets), expected)
    assert not random_intervention(targets, 1.0)[~known].any()


def test_layers_and_heads() -> None:
    layer = ConceptEmbedding(6, 3, 5)
    logits, emb = layer.embed(torch.randn(2, 6))
    assert logits.shape == (2, 3) and emb.shape == (2, 3, 2, 5)
    assert concept_head("mlp", 4, 2, hidden=(8, 8))(torch.rand(3, 4)).shape == (3, 2)


def test_errors_name_the_argument() -> None:
    net = _cbm()
    x, c = torch.randn(3, 6), torch.zeros(3, 4)
    with pytest.raises(ValueError, match="`which`"):
        intervene(net, x, c, which=[7])
    with pytest.raises(ValueError, match="`strategy`"):
        intervene(net, x, c, which=1, strategy="greedy")
    with pytest.raises(ValueError, match="`true_concepts`"):
        intervene(net, x, torch.zeros(3, 5), which=1)
    with pytest.raises(TypeError, match="concept_outputs"):
        intervene(nn.Linear(6, 3), x, c, which=1)
    with pytest.raises(ValueError, match="in_features="):
        BottleneckNetwork(nn.Conv2d(1, 2, 3), 4, 2)
    with pytest.raises(ValueError, match="in_features=24"):
        BottleneckNetwork(
            nn.Sequential(nn.Linear(6, 24), nn.Unflatten(1, (4, 6))), 4, 2, in_features=5
        )(x)
    with pytest.raises(ValueError, match="head='logic'"):
        EmbeddingNetwork(nn.Linear(6, 8), 4, 2, head="logic")
