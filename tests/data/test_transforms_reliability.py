"""RELIABILITY.md, table "Augmentation"."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from tests.helpers import SIZE, detection_config, make_coco, run
from visionkit.data.transforms import apply_pipeline, build_pipeline

pytestmark = pytest.mark.reliability


def test_a_crop_that_removes_every_box_trains_with_a_finite_loss(tmp_path, capsys):
    root = make_coco(tmp_path / "data")  # every box is [8, 8, 16, 16]
    crop = {"name": "Crop", "x_min": 20, "y_min": 20, "x_max": SIZE, "y_max": SIZE}
    resize = {"name": "Resize", "height": SIZE, "width": SIZE}
    config = detection_config(
        tmp_path / "c.yaml", root, root, data={"transforms": {"train": [crop, resize]}}
    )
    code, _, err = run(["train", "--config", config, "--output-dir", tmp_path / "run"], capsys)
    assert code == 0, err[-2000:]
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "metrics.csv").open()))
    losses = [float(r[k]) for r in rows for k in r if k.startswith("train/loss") and r[k]]
    assert losses and all(math.isfinite(x) for x in losses)
    pipe = build_pipeline([crop, resize], (0.5,) * 3, (0.5,) * 3)
    out = apply_pipeline(pipe, {"image": np.zeros((SIZE, SIZE, 3), np.uint8), "image_id": 1,
                                "orig_size": (SIZE, SIZE), "boxes": np.array([[8, 8, 16, 16]],
                                np.float32), "labels": np.array([0])})  # fmt: skip
    assert tuple(out["boxes"].shape) == (0, 4) and tuple(out["labels"].shape) == (0,)


def test_boxes_dropped_by_a_transform_take_their_labels_and_masks_with_them():
    masks = np.zeros((3, 40, 40), np.uint8)
    boxes = np.array([[2, 2, 10, 10], [25, 25, 35, 35], [12, 2, 18, 8]], np.float32)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int), strict=True):
        m[y1:y2, x1:x2] = 1
    pipe = build_pipeline(
        [{"name": "Crop", "x_min": 0, "y_min": 0, "x_max": 20, "y_max": 20}], (0,) * 3, (1,) * 3
    )
    sample = {"image": np.zeros((40, 40, 3), np.uint8), "image_id": 1, "orig_size": (40, 40),
              "boxes": boxes, "labels": np.array([0, 1, 2]), "masks": masks}  # fmt: skip
    out = apply_pipeline(pipe, sample)
    assert out["labels"].tolist() == [0, 2]  # the second box left the crop
    assert out["masks"].shape == (2, 20, 20)
    assert out["masks"][1].sum() == 6 * 6  # the third instance's own mask, not the second's


def test_box_coordinates_a_hair_outside_are_clamped_without_an_exception():
    pipe = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}], (0,) * 3, (1,) * 3)
    sample = {"image": np.zeros((SIZE, SIZE, 3), np.uint8), "image_id": 1,
              "orig_size": (SIZE, SIZE), "labels": np.array([0]),
              "boxes": np.array([[-1e-5, 0, SIZE + 1e-4, SIZE + 2e-5]], np.float32)}  # fmt: skip
    out = apply_pipeline(pipe, sample)
    assert out["boxes"].min() >= 0 and out["boxes"].max() <= SIZE


def test_an_unknown_augmentation_parameter_fails_at_pipeline_build_naming_it(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    typo = {"name": "Resize", "heigth": SIZE, "width": SIZE}
    config = detection_config(tmp_path / "c.yaml", root, data={"transforms": {"train": [typo]}})
    code, _, err = run(["train", "--config", config, "--output-dir", tmp_path / "run"], capsys)
    assert code == 2
    assert (
        "data.transforms.train[0].heigth: unknown parameter of Resize; did you mean 'height'?"
        in err
    )


def test_a_panorama_scaled_down_keeps_a_side_of_one_pixel_and_its_box():
    """A 4000 x 8 px photo at a longest side of 192 is 192 x 0.4: the recipes' RandomScale
    (0.5x-1.5x) left a side of 0 px, and training stopped at a random step with OpenCV's
    ``inv_scale_x > 0`` assertion."""
    steps = [
        {"name": "LongestMaxSize", "max_size": 192},
        {"name": "RandomScale", "scale_limit": [-0.5, -0.5], "p": 1.0},
    ]
    pipe = build_pipeline(steps, (0.5,) * 3, (0.5,) * 3)
    for shape in ((8, 4000), (4000, 8)):
        h, w = shape
        sample = {"image": np.zeros((h, w, 3), np.uint8), "image_id": 1, "orig_size": shape,
                  "boxes": np.array([[0, 0, w / 2, h]], np.float32), "labels": np.array([0])}  # fmt: skip
        out = apply_pipeline(pipe, sample)
        # LongestMaxSize leaves 192 x 1; the scale is raised to keep that one pixel
        assert sorted(out["image"].shape[-2:]) == [1, 192]
        assert len(out["boxes"]) == 1
