"""Verification and retrieval metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionkit.evaluation.embedding import (
    EmbeddingEvaluator,
    best_accuracy,
    gallery_query_split,
    make_pairs,
    retrieval_metrics,
    roc_auc,
    small_set_note,
    tar_at_far,
    verification_metrics,
)

SCORES = np.array([0.9, 0.8, 0.3, 0.1])
SAME = np.array([True, False, True, False])


def test_roc_auc_counts_ordered_pairs_and_half_ties():
    assert roc_auc(SCORES, SAME) == 0.75  # 3 of the 4 (same, different) pairs in order
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert np.isnan(roc_auc(np.array([0.5]), np.array([True])))


def test_tar_at_far_accepts_above_the_allowed_negatives():
    assert tar_at_far(SCORES, SAME, 0.1) == 0.5  # no negative may pass: above 0.8
    assert tar_at_far(SCORES, SAME, 0.5) == 1.0  # one of two may: above 0.1


def test_best_accuracy_is_balanced_and_gives_its_threshold():
    assert best_accuracy(SCORES, SAME) == (0.75, 0.9)
    scores, same = np.array([0.9, 0.7, 0.6, 0.2, 0.1]), np.array([1, 1, 0, 0, 0], bool)
    assert best_accuracy(scores, same) == (1.0, 0.7)


def test_generated_pairs_are_every_pair_and_deterministic():
    pairs, same = make_pairs(np.array([0, 0, 1]))
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2]] and same.tolist() == [True, False, False]
    labels = np.repeat(np.arange(50), 30)
    a, b = make_pairs(labels, limit=100, sampled=200), make_pairs(labels, limit=100, sampled=200)
    assert np.array_equal(a[0], b[0]) and a[1].sum() == 200 and (~a[1]).sum() == 200


def test_verification_of_separable_identities_is_perfect():
    z = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    m = verification_metrics(z, np.array([0, 0, 1, 1]))
    assert m["auc"] == 1.0 and m["tar@far1e-3"] == 1.0 and m["accuracy"] == 1.0


def test_retrieval_recall_and_map_match_the_hand_values():
    labels = np.array([0, 0, 1, 1, 2])
    gallery, queries = gallery_query_split(labels)
    assert gallery.tolist() == [0, 2, 4] and queries.tolist() == [1, 3]
    z = np.array([[1, 0], [0.6, 0.8], [0, 1], [0, 1], [-1, 0]])
    # query 1 (id 0) ranks ids 1, 0, 2: hit at rank 2; query 3 (id 1) hits at rank 1
    m = retrieval_metrics(z, labels, ks=(1, 5))
    assert m == {"recall@1": 0.5, "recall@5": 1.0, "mAP": pytest.approx(0.75)}


def test_evaluator_uses_the_datasets_pairs_by_image_id():
    class Pairs:
        pairs = [(1, 2), (1, 3)]

    ev = EmbeddingEvaluator("emb", Pairs())
    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    batch = {"identity": torch.tensor([0, 0, 1]), "image_ids": torch.tensor([3, 1, 2])}
    ev.process(batch, [{"embedding": v} for v in z])
    out = ev.evaluate()
    # image 1 = [.8,.6] (id 0), 2 = [0,1] (id 1), 3 = [1,0] (id 0): the same pair scores .8,
    # the different pair .6
    assert out["emb/auc"] == 1.0 and out["emb/accuracy"] == 1.0
    assert out["emb/threshold"] == pytest.approx(0.8)


def test_small_sets_are_named_for_what_they_cannot_measure():
    # 4 identities x 3 images: gallery 8 (2 per identity), 54 different pairs
    labels = np.repeat(np.arange(4), 3)
    note = small_set_note(labels)
    assert "recall@10 of a gallery of 8 images are 1.0 whatever the model" in note
    assert (
        "54 different-identity pairs cannot resolve a false-accept rate of 0.001 (it needs "
        "1,000): tar@far1e-3 and tar@far1e-2 accept no different pair" in note
    )
    # the same pairs file decides: 500 different pairs resolve 1e-2, not 1e-3
    many = np.repeat(np.arange(40), 30)
    assert small_set_note(many) is None
    assert small_set_note(np.zeros(0, int)) is None  # a set without identities: said elsewhere
    pairs = np.stack([np.zeros(500, int), 30 * np.arange(1, 40).repeat(13)[:500]], 1)
    assert small_set_note(many, pairs).startswith("500 different-identity pairs cannot resolve a")
    assert "tar@far1e-3 accept" in small_set_note(many, pairs)


def test_the_evaluator_warns_of_a_small_set_once(caplog):
    ev = EmbeddingEvaluator("emb")
    z = torch.eye(6)[:, :4].clone() + 0.1
    batch = {"identity": torch.tensor([0, 0, 1, 1, 2, 2]), "image_ids": torch.arange(6)}
    for _ in range(2):  # two validations
        ev.reset()
        ev.process(batch, [{"embedding": v} for v in z])
        with caplog.at_level("WARNING", logger="visionkit.evaluation.embedding"):
            assert "emb/recall@10" in ev.evaluate()  # still reported
    warned = [r.getMessage() for r in caplog.records if "small validation set" in r.getMessage()]
    assert warned == [
        "emb: a small validation set (6 images): recall@5 and recall@10 of a gallery of 3 "
        "images are 1.0 whatever the model; 12 different-identity pairs cannot resolve a "
        "false-accept rate of 0.001 (it needs 1,000): tar@far1e-3 and tar@far1e-2 accept no "
        "different pair"
    ]


def test_the_small_set_note_is_of_the_whole_set_not_the_sanity_checks_batches(tmp_path, caplog):
    """Training's sanity check scores 2 batches: the note was of them ("(4 images)"), and a
    large set was called small on every run; the first real validation never noted."""
    from visionkit.data.synthetic_identities import make_identities
    from visionkit.engine.runner import train

    make_identities(tmp_path / "train", num_images=8, size=32, identities=2)
    make_identities(tmp_path / "val", num_images=9, size=32, identities=3, first_identity=2)
    config = {
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"emb": {"name": "embedding", "embedding_dim": 8}},
        },
        "data": {
            "train": {"format": "identities", "root": str(tmp_path / "train")},
            "val": {"format": "identities", "root": str(tmp_path / "val")},
            "image_size": 32,
            "batch_size": 2,
            "num_workers": 0,
        },
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 1,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
        },
    }
    with caplog.at_level("WARNING", logger="visionkit.evaluation.embedding"):
        train(config)
    warned = [r.getMessage() for r in caplog.records if "small validation set" in r.getMessage()]
    assert [w.split(":")[1] for w in warned] == [" a small validation set (9 images)"]
