"""The ``fcos_embedding`` head: shapes, which points learn which identity, the loss (it
falls when fitted; boxes without identity and images without identities weigh nothing), and
postprocess (the embeddings of the kept detections' points)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visionkit.errors import DataError
from visionkit.models.heads._utils import unpack_targets
from visionkit.models.heads.fcos_embedding import FCOSEmbeddingHead


def _head(**kwargs):
    torch.manual_seed(0)
    args = {"num_classes": 2, "num_identities": 3, "embedding_dim": 8, "num_convs": 1}
    return FCOSEmbeddingHead(in_channels=[16, 16], strides=[8, 16], **{**args, **kwargs})


def _features(batch=2):
    torch.manual_seed(1)
    return [torch.rand(batch, 16, 8, 8), torch.rand(batch, 16, 4, 4)]


BOXES = torch.tensor([[4.0, 4.0, 28.0, 28.0], [34.0, 30.0, 60.0, 60.0]])
BATCH = {"boxes": [BOXES], "labels": [torch.tensor([0, 1])], "identities": [torch.tensor([2, 0])]}


def test_shapes_and_arguments():
    out = _head()(_features())
    assert out["embeddings"].shape == (2, 80, 8)
    assert torch.allclose(out["embeddings"].norm(dim=-1), torch.ones(2, 80))
    with pytest.raises(ValueError, match="needs num_identities >= 2"):
        _head(num_identities=None)
    assert _head(num_identities=None, loss="triplet").identity_weight is None
    with pytest.raises(ValueError, match="loss must be one of"):
        _head(loss="softmax")


def test_points_learn_the_identity_of_their_box():
    head = _head()
    out = head(_features(1))
    unpacked = unpack_targets(BATCH, 1, torch.device("cpu"))
    assigned = head.assign_batch(out, unpacked)
    ids = head.point_identities(BATCH, unpacked, assigned)[0]
    matched = assigned.matched[0]
    assert set(ids[matched == 0].tolist()) == {2} and set(ids[matched == 1].tolist()) == {0}
    assert (ids[matched < 0] == -1).all() and (matched == 0).any() and (matched == 1).any()
    no_id = {**BATCH, "identities": [torch.tensor([-1, 0])]}
    assert (head.point_identities(no_id, unpacked, assigned)[0][matched == 0] == -1).all()
    with pytest.raises(DataError, match="1 identities for 2 boxes"):
        head.point_identities({**BATCH, "identities": [torch.tensor([1])]}, unpacked, assigned)


@pytest.mark.parametrize("loss", ["arcface", "cosface", "supcon", "triplet"])
def test_loss_falls_when_fitted(loss):
    head = _head(loss=loss)
    features = _features(1)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = float(head.loss(head(features), BATCH)["emb"].detach())
    assert first > 0
    for _ in range(30):
        losses = head.loss(head(features), BATCH)
        optimiser.zero_grad()
        sum(losses.values()).backward()
        optimiser.step()
    last = head.loss(head(features), BATCH)
    assert float(last["emb"].detach()) < 0.5 * first, (first, last["emb"])
    assert sorted(last) == ["box", "cls", "ctr", "emb"]


def test_arcface_loss_is_the_centerness_weighted_mean_of_embedding_py():
    from visionkit.models.heads.embedding import arcface_logits
    from visionkit.models.heads.fcos import centerness_targets

    head = _head()
    out = head(_features(1))
    unpacked = unpack_targets(BATCH, 1, torch.device("cpu"))
    assigned = head.assign_batch(out, unpacked)
    ids = head.point_identities(BATCH, unpacked, assigned)
    chosen = ids >= 0
    logits = arcface_logits(out["embeddings"][chosen], head.identity_weight, ids[chosen], 30.0, 0.5)
    weight = centerness_targets(assigned.ltrb[chosen]).clamp(min=1e-3)
    expected = (
        F.cross_entropy(logits, ids[chosen], reduction="none") * weight
    ).sum() / weight.sum()
    assert torch.allclose(head.loss(out, BATCH)["emb"], expected)


def test_boxes_and_images_without_identity_weigh_nothing_and_eval_uses_triplets():
    head = _head()
    out = head(_features(1))
    none = head.loss(out, {**BATCH, "identities": [torch.tensor([-1, -1])]})
    assert float(none["emb"].detach()) == 0.0 and none["box"] > 0
    none["emb"].backward()  # still connected: every parameter in the graph (DDP)
    assert head.identity_weight.grad is not None
    missing = head.loss(out, {"boxes": BATCH["boxes"], "labels": BATCH["labels"]})
    assert float(missing["emb"].detach()) == 0.0
    with pytest.raises(DataError, match="num_identities=3"):
        head.loss(out, {**BATCH, "identities": [torch.tensor([3, 0])]})
    head.eval()  # new identities: no class vectors, the batch-hard triplet loss instead
    from visionkit.models.heads.embedding import batch_hard_triplet_loss

    new = {**BATCH, "identities": [torch.tensor([7, 9])]}
    with torch.no_grad():
        out = head(_features(1))
        unpacked = unpack_targets(new, 1, torch.device("cpu"))
        ids = head.point_identities(new, unpacked, head.assign_batch(out, unpacked))
        expected = batch_hard_triplet_loss(out["embeddings"][ids >= 0], ids[ids >= 0], 0.3)
        assert torch.allclose(head.loss(out, new)["emb"], expected) and expected > 0


def test_postprocess_gives_the_embeddings_of_the_kept_points():
    head = _head(score_thresh=0.0, detections_per_img=5).eval()
    out = head(_features())
    predictions = head.postprocess(out, [(64, 64)] * 2, orig_sizes=[(128, 96)] * 2)
    for i, prediction in enumerate(predictions):
        detections = head.detect(out, [(64, 64)] * 2, [(128, 96)] * 2)[i]
        index = detections[1]
        assert prediction["embeddings"].shape == (len(prediction["boxes"]), 8)
        assert torch.equal(prediction["embeddings"], out["embeddings"][i, index])
        assert torch.equal(prediction["boxes"], detections[0]["boxes"])
        assert (prediction["boxes"][:, 2] <= 96 + 1e-4).all()


def test_predictions_json_entries_carry_each_detections_embedding():
    from visionkit.inference.outputs import coco_results

    head = _head(score_thresh=0.0, detections_per_img=3).eval()
    (prediction,) = head.postprocess(head(_features(1)), [(64, 64)])
    entries = coco_results(5, {"det": prediction}, [1, 2])
    assert len(entries) == 3
    for entry, vector in zip(entries, prediction["embeddings"], strict=True):
        assert entry["embedding"] == pytest.approx(vector.tolist(), abs=1e-5)


def test_num_identities_under_the_datas_is_a_config_error_at_build():
    import visionkit
    from visionkit.errors import ConfigError

    head = {"name": "fcos_embedding", "num_classes": 2, "embedding_dim": 8, "num_convs": 1}
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [-2, -1]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 4, "max_level": 5},
            "heads": {"det": head},
        }
    }
    names = {"instances": ["a", "b"], "identity": [f"id{i}" for i in range(5)]}
    assert visionkit.create_model(config, label_names=names).heads["det"].num_identities == 5
    head["num_identities"] = 8  # more class vectors than identities: allowed
    assert visionkit.create_model(config, label_names=names).heads["det"].num_identities == 8
    head["num_identities"] = 3  # found at the first batch with identity 3 or 4 before
    with pytest.raises(ConfigError, match=r"det\.num_identities: 3, but the training data has 5"):
        visionkit.create_model(config, label_names=names)
