"""The embedding head: shapes, unit vectors, and each loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from visionkit.errors import DataError
from visionkit.models.heads.embedding import (
    EmbeddingHead,
    arcface_logits,
    batch_hard_triplet_loss,
    cosface_logits,
    supcon_loss,
)

W = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_embeddings_are_unit_vectors_of_the_configured_size():
    head = EmbeddingHead([8, 16], num_classes=3, embedding_dim=5, hidden_dims=(12,))
    out = head([torch.rand(4, 8, 8, 8), torch.rand(4, 16, 4, 4)])["embedding"]
    assert out.shape == (4, 5)
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-6)
    preds = head.eval().postprocess(head([torch.rand(2, 8, 8, 8), torch.rand(2, 16, 4, 4)]))
    assert [p["embedding"].shape for p in preds] == [torch.Size([5])] * 2


def test_arcface_adds_the_angular_margin_to_the_true_class_only():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    logits = arcface_logits(e, W, torch.tensor([0, 0, 0]), scale=2.0, margin=0.5)
    m = 0.5
    expected = torch.tensor(
        [
            [2 * math.cos(m), 0.0],  # theta 0 -> cos(0 + m)
            [2 * math.cos(math.pi / 2 + m), 2.0],  # theta pi/2 -> cos(pi/2 + m)
            [2 * (-1 - m * math.sin(m)), 0.0],  # past pi - m: cos(theta) - m sin(m)
        ]
    )
    assert torch.allclose(logits, expected, atol=1e-5)


def test_cosface_subtracts_the_margin_from_the_true_cosine():
    logits = cosface_logits(torch.tensor([[3.0, 0.0]]), W, torch.tensor([1]), 4.0, 0.35)
    assert torch.allclose(logits, torch.tensor([[4.0, 4.0 * (0.0 - 0.35)]]), atol=1e-6)


def test_supcon_matches_the_hand_value():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = supcon_loss(z, torch.tensor([0, 0, 1]), temperature=1.0)
    # anchors 1 and 2: -log(e^1 / (e^1 + e^0)); anchor 3 has no positive and is left out
    assert loss.item() == pytest.approx(math.log(math.e + 1) - 1, abs=1e-6)


def test_triplet_mines_the_hardest_pairs_in_the_batch():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss = batch_hard_triplet_loss(z, torch.tensor([0, 0, 1]), margin=0.3)
    # anchor 0: relu(sqrt2 - 2 + .3) = 0; anchor 1: relu(sqrt2 - sqrt2 + .3) = .3; anchor 2: none
    assert loss.item() == pytest.approx(0.15, abs=1e-5)


@pytest.mark.parametrize("loss", ["arcface", "cosface", "supcon", "triplet"])
def test_every_loss_trains_and_unlabelled_batches_keep_the_graph(loss):
    torch.manual_seed(0)
    head = EmbeddingHead([8], num_classes=3, embedding_dim=4, loss=loss)
    features = [torch.rand(6, 8, 4, 4)]
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    value = head.loss(head(features), {"identity": labels})[loss]
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    none = head.loss(head(features), {"identity": torch.full((6,), -1)})[loss]
    assert none.item() == 0.0 and none.requires_grad


def test_arcface_needs_identities_and_refuses_unknown_training_labels():
    with pytest.raises(ValueError, match="one vector per training identity"):
        EmbeddingHead([8], loss="arcface")
    head = EmbeddingHead([8], num_classes=2, embedding_dim=4)
    with pytest.raises(DataError, match="identity label 5"):
        head.loss(head([torch.rand(2, 8, 2, 2)]), {"identity": torch.tensor([0, 5])})
    head.eval()  # validation identities are new: the triplet loss, which needs no vectors
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    value = head.loss({"embedding": z}, {"identity": torch.tensor([7, 7, 9])})["arcface"]
    assert value.item() == pytest.approx(0.15, abs=1e-5)
