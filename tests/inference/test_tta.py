"""Horizontal-flip test-time augmentation (visionkit/inference/tta.py) for every kind of head."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import visionkit
from tests.helpers import predict_at_score_thresh
from visionkit.inference.flip import hflip_back_map, hflip_detections
from visionkit.inference.tta import (
    hflip_images,
    merge_hflip,
    predict_hflip,
    predict_tta,
)
from visionkit.models.model import VisionModel

PYRAMID = {"name": "simple_cnn", "out_indices": [2, 3, 4]}
NECK = {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5}


def model_with(heads: dict[str, Any], image_size: int = 64) -> VisionModel:
    torch.manual_seed(0)
    config = {
        "model": {"backbone": PYRAMID, "neck": NECK, "heads": heads},
        "data": {"image_size": image_size},
    }
    return visionkit.create_model(config)


def random_image(h: int = 48, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_hflip_images_mirrors_each_image_inside_its_region_and_keeps_the_padding():
    images = torch.arange(2 * 3 * 4 * 8, dtype=torch.float).view(2, 3, 4, 8)
    flipped = hflip_images(images, [(4, 8), (3, 5)])
    assert torch.equal(flipped[0], images[0].flip(-1))
    assert torch.equal(flipped[1, :, :3, :5], images[1, :, :3, :5].flip(-1))
    assert torch.equal(flipped[1, :, 3:], images[1, :, 3:])  # bottom padding untouched
    assert torch.equal(flipped[1, :, :, 5:], images[1, :, :, 5:])  # right padding untouched
    assert torch.equal(hflip_images(flipped, [(4, 8), (3, 5)]), images)


def test_hflip_back_map_undoes_the_flip_of_dense_outputs_at_their_stride():
    torch.manual_seed(0)
    maps = torch.randn(2, 5, 4, 8)  # logits at stride 8 of a 32×64 batch tensor
    # image 0 fills the batch width (64 px); image 1 is 48 px wide, padded to 64 (6 cells)
    mirrored = maps.clone()
    mirrored[0] = maps[0].flip(-1)
    mirrored[1, :, :, :6] = maps[1, :, :, :6].flip(-1)
    back = hflip_back_map(mirrored, [(32, 64), (32, 48)], stride=8)
    assert torch.allclose(back[0], maps[0], atol=1e-5)
    assert torch.allclose(back[1, :, :, :6], maps[1, :, :, :6], atol=1e-5)


def test_flipped_boxes_map_back_to_w_minus_x_and_masks_are_mirrored():
    masks = torch.zeros(1, 20, 50, dtype=torch.bool)
    masks[0, 2:8, 5:15] = True
    pred = {"boxes": torch.tensor([[5.0, 2.0, 15.0, 8.0]]), "masks": masks, "scores": [0.5]}
    back = hflip_detections(pred, width=50)
    assert back["boxes"].tolist() == [[35.0, 2.0, 45.0, 8.0]]  # x' = W - x
    assert back["masks"][0, 2:8, 35:45].all() and back["masks"].sum() == masks.sum()
    assert back["scores"] == [0.5]


def test_flipped_keypoints_map_back_to_w_minus_1_minus_x_with_left_and_right_exchanged():
    # points: centre, left, top, right, bottom of one object, as pixel indices in a 50 px image
    points = torch.tensor(
        [[[20.0, 5, 0.9], [10, 5, 0.8], [20, 1, 0.7], [30, 5, 0.6], [20, 9, 0.5]]]
    )
    pred = {"boxes": torch.tensor([[10.0, 1, 31, 10]]), "keypoints": points}
    back = hflip_detections(pred, width=50, keypoint_flip=[0, 3, 2, 1, 4])
    # the mirror's "left" point (x 10 → 39) is the original's right-hand one: it becomes "right"
    expected = [[29, 5, 0.9], [19, 5, 0.6], [29, 1, 0.7], [39, 5, 0.8], [29, 9, 0.5]]
    assert torch.allclose(back["keypoints"][0], torch.tensor(expected))
    twice = hflip_detections(back, width=50, keypoint_flip=[0, 3, 2, 1, 4])
    assert torch.equal(twice["keypoints"], points)  # the same flip undoes itself


class BoxHead(nn.Module):
    """A detection head whose raw output *is* one box per image (xyxy in the batch tensor):
    it lets the test see exactly where TTA puts the flipped view's detection."""

    task: ClassVar[str] = "detection"
    reads: ClassVar[str] = "backbone"
    nms_thresh = 0.5
    detections_per_img = 10

    def forward(self, features):
        return {}

    def postprocess(self, outputs, image_sizes, orig_sizes=None):
        out = []
        for box, score, (h, w), (oh, ow) in zip(
            outputs["box"], outputs["score"], image_sizes, orig_sizes, strict=True
        ):
            scale = torch.tensor([ow / w, oh / h, ow / w, oh / h])
            out.append(
                {
                    "boxes": (box * scale)[None],
                    "scores": score[None],
                    "labels": torch.tensor([1]),
                    "names": ["thing"],
                }
            )
        return out


def test_merge_maps_the_mirror_views_boxes_back_and_merges_duplicates_by_nms():
    model = VisionModel(visionkit.create_backbone("simple_cnn"), {"det": BoxHead()})
    sizes, origs = [(32, 64), (32, 64)], [(64, 128), (64, 128)]  # images were halved
    outputs = {
        "det": {"box": torch.tensor([[4.0, 4, 20, 12]] * 2), "score": torch.tensor([0.9, 0.9])}
    }
    flipped = {
        "det": {
            # image 0: the mirror view sees the same object, mirrored (64 - 20 = 44, 64 - 4 = 60)
            # image 1: the mirror view sees another object on the right-hand side
            "box": torch.tensor([[44.0, 4, 60, 12], [0.0, 20, 10, 30]]),
            "score": torch.tensor([0.8, 0.7]),
        }
    }
    first, second = (p["det"] for p in merge_hflip(model, outputs, flipped, sizes, origs))
    assert first["boxes"].tolist() == [[8.0, 8.0, 40.0, 24.0]]  # one box: NMS kept the 0.9
    assert first["scores"].tolist() == pytest.approx([0.9])
    # the mirror view's box (0..10 in the 64 px tensor = 0..20 in the 128 px original) at W - x
    assert second["boxes"].tolist() == [[8.0, 8.0, 40.0, 24.0], [108.0, 40.0, 128.0, 60.0]]
    assert second["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert second["names"] == ["thing", "thing"]


def test_classification_tta_averages_the_probabilities_of_both_views():
    model = visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn"},
                "heads": {"cls": {"name": "linear", "num_classes": 4}},
            },
            "data": {"image_size": 64},
        },
        label_names={"class": ["a", "b", "c", "d"]},
    )
    image = random_image()
    (tta,) = predict_hflip(model, [image])
    plain, mirror = model.predict([image, np.ascontiguousarray(image[:, ::-1])])
    expected = (plain["cls"]["scores"] + mirror["cls"]["scores"]) / 2
    assert torch.allclose(tta["cls"]["scores"], expected, atol=1e-6)
    assert tta["cls"]["label"] == int(expected.argmax())
    assert tta["cls"]["name"] == "abcd"[tta["cls"]["label"]]
    assert not torch.allclose(plain["cls"]["scores"], mirror["cls"]["scores"])  # views differ

    symmetric = np.concatenate([image[:, :40], image[:, :40][:, ::-1]], axis=1)
    (tta,) = predict_hflip(model, [symmetric])
    (plain,) = model.predict([symmetric])
    assert tta["cls"]["label"] == plain["cls"]["label"]
    assert torch.allclose(tta["cls"]["scores"], plain["cls"]["scores"], atol=1e-5)


def test_semantic_tta_is_flip_equivariant_and_differs_from_one_view():
    model = model_with({"seg": {"name": "semantic_fpn", "channels": 16, "num_classes": 5}})
    image = random_image()
    mirrored = np.ascontiguousarray(image[:, ::-1])
    (tta,) = predict_tta(model, [image], "flip")
    (tta_of_mirror,) = predict_tta(model, [mirrored], "flip")
    (plain,) = model.predict([image])
    assert tta["seg"]["mask"].shape == (48, 80)
    same = (tta["seg"]["mask"] == tta_of_mirror["seg"]["mask"].flip(-1)).float().mean()
    assert same > 0.999  # merging both views does not depend on which one came first
    assert (tta["seg"]["mask"] != plain["seg"]["mask"]).any()  # the mirror view counted


@pytest.mark.parametrize("head", ["fcos", "fcos_mask"])
def test_detection_tta_returns_merged_detections_in_the_original_frame(head):
    model = model_with({"det": {"name": head, "num_classes": 3, "num_convs": 1}})
    model.heads["det"].score_thresh = 0.0  # an untrained head: keep every candidate
    predict_at_score_thresh(model)
    image = random_image()
    (tta,) = predict_tta(model, [image], "flip")
    (plain,) = model.predict([image])
    det = tta["det"]
    assert 0 < len(det["boxes"]) <= model.heads["det"].detections_per_img
    assert (det["boxes"][:, [0, 2]] >= 0).all() and (det["boxes"][:, [0, 2]] <= 80).all()
    assert (det["boxes"][:, [1, 3]] >= 0).all() and (det["boxes"][:, [1, 3]] <= 48).all()
    assert (det["scores"][:-1] >= det["scores"][1:]).all()
    assert len(det["names"] or det["labels"]) == len(det["boxes"])
    assert det["scores"][0] >= plain["det"]["scores"][0]  # the best of two views
    if head == "fcos_mask":
        assert det["masks"].shape == (len(det["boxes"]), 48, 80)


def test_tta_refuses_heads_it_cannot_merge_and_unknown_modes():
    class Odd(BoxHead):
        task = "presence"

    model = VisionModel(visionkit.create_backbone("simple_cnn"), {"odd": Odd()})
    with pytest.raises(ValueError, match="head 'odd' \\(task 'presence'\\)"):
        merge_hflip(model, {"odd": {}}, {"odd": {}}, [(8, 8)], [(8, 8)])
    with pytest.raises(ValueError, match="unknown test-time augmentation 'rotate'"):
        predict_tta(model, [random_image()], "rotate")


@pytest.mark.parametrize(
    "head",
    [
        {
            "name": "fcos_keypoints",
            "num_keypoints": 5,
            "keypoint_names": ["center", "left", "top", "right", "bottom"],
        },
        {"name": "fcos_embedding", "num_identities": 4, "embedding_dim": 8},
    ],
    ids=["keypoints", "embedding"],
)
def test_tta_of_box_heads_with_keypoints_or_embeddings_is_flip_equivariant(head):
    """TTA on an image and on its mirror merges the same two views: the same detections,
    mirrored, each keeping its own keypoints (mirrored, left and right exchanged) or its own
    embedding."""
    model = model_with({"det": {**head, "num_classes": 3, "num_convs": 1}})
    model.heads["det"].score_thresh = 0.0  # an untrained head: keep every candidate
    predict_at_score_thresh(model)
    model.heads["det"].detections_per_img = 20
    image = random_image()
    mirrored = np.ascontiguousarray(image[:, ::-1])
    (tta,) = predict_tta(model, [image], "flip")
    (tta_of_mirror,) = predict_tta(model, [mirrored], "flip")
    (plain,) = model.predict([image])
    det, other = tta["det"], hflip_detections(tta_of_mirror["det"], 80, [0, 3, 2, 1, 4])
    assert len(det["boxes"]) == 20
    assert torch.allclose(det["boxes"], other["boxes"], atol=1e-3)
    assert torch.allclose(det["scores"], other["scores"], atol=1e-5)
    # every kept detection is one of the plain view's or one of the mirror view's (mirrored)
    (mirror,) = model.predict([mirrored])
    key = "keypoints" if "keypoints" in det else "embeddings"
    assert det[key].shape[0] == 20
    assert torch.allclose(det[key], other[key], atol=1e-3)
    back = hflip_detections(mirror["det"], 80, [0, 3, 2, 1, 4])
    for box, value in zip(det["boxes"], det[key], strict=True):
        source = next(
            v for v in (plain["det"], back) if (v["boxes"] - box).abs().sum(1).min() < 1e-3
        )
        row = (source["boxes"] - box).abs().sum(1).argmin()
        assert torch.allclose(source[key][row], value, atol=1e-5)
    assert det["scores"][0] >= plain["det"]["scores"][0]
