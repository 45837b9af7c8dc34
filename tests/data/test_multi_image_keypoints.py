"""Keypoints and identities through the multi-image steps (:mod:`visionkit.data.mixing`):
each box keeps its own points and identity through Mosaic, MixUp and CopyPaste; points a
Mosaic cell crops away become visibility 0, points a pasted object covers visibility 1."""

from __future__ import annotations

import csv
import math

import albumentations as A
import numpy as np
import pytest
import torch

from tests.data.test_multi_image_transforms import Samples, draw, pipeline, transformed
from visionkit.data.datasets import TransformedDataset
from visionkit.data.mixing import CopyPaste, MixUp, Mosaic
from visionkit.data.synthetic import make_shapes
from visionkit.data.transforms import bbox_params


class PointSamples(Samples):
    """:class:`Samples` whose box ``[x1, y1, x2, y2]`` carries keypoints at its top-left
    corner (visible), bottom-right corner (hidden: v = 1) and centre (visible), and identity
    ``100 + k``; ``keypoint_flip`` exchanges the two corners."""

    def __getitem__(self, k: int) -> dict:
        sample = super().__getitem__(k)
        x1, y1, x2, y2 = sample["boxes"][0]
        sample["keypoints"] = np.array(
            [[[x1, y1, 2], [x2, y2, 1], [(x1 + x2) / 2, (y1 + y2) / 2, 2]]], np.float32
        )
        sample["keypoint_flip"] = [1, 0, 2]
        sample["identities"] = np.array([100 + k], np.int64)
        return sample


def test_mosaic_keeps_each_boxs_keypoints_and_identity_and_hides_the_cropped_ones():
    mosaic = Mosaic(A.Mosaic(target_size=(64, 64), cell_shape=(64, 64)), bbox_params(), "t")
    samples = PointSamples(n=8)
    seen_hidden = 0
    for seed in range(6):
        mosaic.compose.set_random_seed(seed)
        out = mosaic(samples[seed], [samples[(seed + i) % 8] for i in (1, 2, 3)])
        boxes, labels = out["boxes"], out["labels"]
        points, ids = out["keypoints"], out["identities"]
        assert points.shape == (len(boxes), 3, 3) and len(ids) == len(boxes) >= 2
        assert ids.tolist() == (100 + labels).tolist()  # each box keeps its own identity
        assert out["keypoint_flip"] == [1, 0, 2]
        for box, (top_left, bottom_right, centre) in zip(boxes, points, strict=True):
            # a corner that survived the crop is the box's corner; its visibility is its own
            # (a keypoint is a pixel index, a box corner an edge: a cell resized by s moves
            # them (s - 1) / 2 apart, on top of the cell's rounding)
            if top_left[2] > 0:
                assert top_left.tolist() == pytest.approx([box[0], box[1], 2], abs=1.0)
            if bottom_right[2] > 0:
                assert bottom_right.tolist() == pytest.approx([box[2], box[3], 1], abs=1.0)
            if centre[2] > 0:
                assert box[0] - 0.5 <= centre[0] <= box[2] + 0.5
                assert box[1] - 0.5 <= centre[1] <= box[3] + 0.5
            inside = (points[..., 0] >= 0) & (points[..., 0] < 64) & (points[..., 1] < 64)
            assert inside[points[..., 2] > 0].all()
        seen_hidden += int((points[..., 2] == 0).sum())
    assert seen_hidden > 0  # cells crop boxes: some corners were cut away and marked v = 0


def test_a_mosaic_pipeline_gives_keypoint_rows_and_identities_for_every_box():
    steps = [{"name": "Mosaic", "p": 1.0}, {"name": "HorizontalFlip", "p": 1.0}]
    dataset = TransformedDataset(PointSamples(n=8), pipeline(steps), reseed=True)
    checked = 0
    for index in range(3):
        out = draw(dataset, index, seed=index)
        n = len(out["boxes"])
        assert out["keypoints"].shape == (n, 3, 3) and out["identities"].shape == (n,)
        assert (out["identities"] == 100 + out["labels"]).all()
        # mirrored: the left corner of a box is now its top-RIGHT one, and it was exchanged
        # with the other corner by keypoint_flip, so point 1 (v = 2 now) sits at x = x2 - 1
        visible = out["keypoints"][:, 1, 2] == 2
        xs = out["keypoints"][visible, 1, 0]
        assert torch.allclose(xs, out["boxes"][visible, 2] - 1, atol=0.51)
        checked += len(xs)
    assert checked >= 2


def transformed_with_points(k: int) -> dict:
    return transformed(k, 48, PointSamples)


def test_mixup_joins_the_keypoints_and_identities_of_both_samples():
    a, b = transformed_with_points(0), transformed_with_points(3)
    out = MixUp(p=1.0)(a, b, np.random.default_rng(0))
    assert torch.equal(out["keypoints"], torch.cat([a["keypoints"], b["keypoints"]]))
    assert out["identities"].tolist() == [100, 103]


def test_copy_paste_hides_covered_points_and_brings_the_pasted_objects_points():
    a = transformed_with_points(0)
    a["boxes"] = torch.tensor([[20.0, 4.0, 40.0, 20.0]])
    a["masks"] = torch.zeros((1, 48, 48), dtype=torch.uint8)
    a["masks"][0, 4:20, 20:40] = 1
    a["keypoints"] = torch.tensor([[[22.0, 6.0, 2.0], [38.0, 18.0, 2.0], [30.0, 12.0, 1.0]]])
    b = transformed_with_points(4)
    b["boxes"] = torch.tensor([[0.0, 0.0, 28.0, 24.0]])
    b["masks"] = torch.zeros((1, 48, 48), dtype=torch.uint8)
    b["masks"][0, :24, :28] = 1
    b["keypoints"] = torch.tensor([[[1.0, 1.0, 2.0], [26.0, 22.0, 2.0], [14.0, 12.0, 2.0]]])

    out = CopyPaste(p=1.0)(a, b, np.random.default_rng(0))
    assert out["identities"].tolist() == [100, 104]
    # a's first point (x 22) lies under the pasted object: labelled but hidden now; the second
    # (x 38) stays visible; the third was hidden already
    assert out["keypoints"][0, :, 2].tolist() == [1.0, 2.0, 1.0]
    assert torch.equal(out["keypoints"][0, :, :2], a["keypoints"][0, :, :2])
    assert torch.equal(out["keypoints"][1], b["keypoints"][0])


@pytest.mark.reliability
def test_keypoints_train_with_mosaic_and_mixup(tmp_path):
    from visionkit.engine.runner import train

    make_shapes(tmp_path / "train", num_images=12, size=64, seed=0, keypoints=True)
    make_shapes(tmp_path / "val", num_images=4, size=64, seed=1, keypoints=True)
    steps = [
        {"name": "Mosaic", "p": 1.0},
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "MixUp", "p": 1.0},
    ]
    head = {"name": "fcos_keypoints", "num_convs": 1, "kpt_convs": 1, "num_keypoints": 5}
    config = {
        "name": "kp_mix",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"pose": head},
        },
        "data": {
            "train": {"format": "coco", "images": str(tmp_path / "train")},
            "val": {"format": "coco", "images": str(tmp_path / "val")},
            "image_size": 64,
            "batch_size": 4,
            "num_workers": 0,
            "transforms": {"train": steps, "val": [{"name": "Resize"}]},
        },
        "trainer": {"max_steps": 3, "enable_progress_bar": False, "log_every_n_steps": 1},
    }
    run_dir, metrics = train(config)
    log = run_dir / "logs" / "metrics.csv"
    rows = [r for r in csv.DictReader(log.open()) if r.get("train/pose/kpt_step")]
    assert len(rows) == 3
    assert all(math.isfinite(float(r["train/pose/kpt_step"])) for r in rows)
    assert "pose/kpt_mAP" in metrics


def test_mosaic_points_of_boxes_the_crop_dropped_are_left_out():
    # two source images (M = 2 boxes each); the mosaic kept boxes 3 and 0 (in that order) and
    # dropped box 1, whose point still lies inside the crop
    items = [
        {"keypoints": np.array([[[0, 0, 2], [0, 0, 1]], [[0, 0, 2], [0, 0, 2]]], np.float32)},
        {"keypoints": np.array([[[0, 0, 1], [0, 0, 2]], [[0, 0, 2], [0, 0, 1]]], np.float32)},
    ]
    out = {  # keypoint label = box id * K + point index, K = 2
        "keypoint_ids": [0, 2, 7],
        "keypoints": np.array([[1, 2], [3, 4], [5, 6]], np.float32),
    }
    points = Mosaic._keypoints(out, items, np.array([3, 0]), most=2)
    assert points.tolist() == [
        [[0, 0, 0], [5, 6, 1]],  # box 3 = image 1's box 1: its point 1 moved, v = 1; point 0 cut
        [[1, 2, 2], [0, 0, 0]],  # box 0: point 0 moved, v = 2; point 1 cut
    ]


def test_a_partner_of_another_size_brings_its_keypoints_scaled_with_its_image():
    """MixUp / CopyPaste resize a partner of another size (a pipeline without a fixed-size
    step) to the sample's: its image, masks and boxes were scaled, its keypoints were not (a
    40x40 partner's point at pixel 20 stayed at 20 in the 80x80 mix)."""
    from visionkit.data.mixing import resized_like

    partner = {
        "image": torch.zeros(3, 40, 40),
        "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]),
        "keypoints": torch.tensor([[[20.0, 20.0, 2.0], [0.0, 0.0, 0.0]]]),
        "image_size": (40, 40),
    }
    out = resized_like(partner, (80, 80))
    assert out["boxes"].tolist() == [[20.0, 20.0, 60.0, 60.0]]
    # pixel 20 of 40 covers pixels 40 and 41 of 80: centre 40.5; an unlabelled point is left
    assert out["keypoints"].tolist() == [[[40.5, 40.5, 2.0], [0.0, 0.0, 0.0]]]
