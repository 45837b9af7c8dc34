"""Keypoints in the data path: the COCO reader's checks, the synthetic shapes' keypoints,
albumentations with flip pairs, and collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_coco
from visionkit.data.batch import collate
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.coco_keypoints import flip_index
from visionkit.data.synthetic import make_shapes
from visionkit.data.synthetic_keypoints import KEYPOINT_NAMES, shape_points
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.errors import AnnotationError

NAMES = ["nose", "left_eye", "right_eye"]


def _with_keypoints(data):
    data["categories"] = [
        {**c, "keypoints": NAMES, "skeleton": [[1, 2], [1, 3]]} for c in data["categories"]
    ]
    for ann in data["annotations"]:
        ann["keypoints"] = [12, 12, 2, 10, 10, 1, 14, 10, 2]
        ann["num_keypoints"] = 3


def test_reader_gives_keypoints_and_flip_pairs(tmp_path):
    root = make_coco(tmp_path / "d", edit=_with_keypoints)
    ds = CocoDataset(root, keypoints=True)
    sample = ds[0]
    assert sample["keypoints"].shape == (1, 3, 3)
    assert sample["keypoints"][0, 1].tolist() == [10, 10, 1]
    assert sample["keypoint_flip"] == [0, 2, 1]
    assert ds.keypoint_schema.skeleton == [[1, 2], [1, 3]]
    assert "keypoints" not in CocoDataset(root)[0]  # only when asked for


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(keypoints=[1, 2, 2]), "keypoints has 3 values; expected 3 x 3 = 9"),
        (lambda a: a["keypoints"].__setitem__(5, 3), "left_eye (v=3)"),
        (lambda a: a.update(num_keypoints=1), "num_keypoints is 1 but 3 keypoints have v > 0"),
        (lambda a: a["keypoints"].__setitem__(0, float("nan")), "finite numbers"),
    ],
)
def test_reader_refuses_bad_keypoints_naming_the_annotation(tmp_path, change, message):
    def edit(data):
        _with_keypoints(data)
        change(data["annotations"][1])

    root = make_coco(tmp_path / "d", edit=edit)
    with pytest.raises(AnnotationError) as err:
        CocoDataset(root, keypoints=True)
    assert "annotation id 102 (image id 2)" in str(err.value)
    assert message in str(err.value)


def test_reader_refuses_categories_without_keypoint_names(tmp_path):
    root = make_coco(tmp_path / "d")
    with pytest.raises(AnnotationError, match="no category has a 'keypoints' list"):
        CocoDataset(root, keypoints=True)


def test_flip_index_pairs_left_and_right():
    assert flip_index(["left_hip", "Right_hip", "right_hip", "top"]) == [2, 1, 0, 3]
    assert flip_index(KEYPOINT_NAMES) == [0, 3, 2, 1, 4]


def test_shape_points_are_the_extreme_points():
    points = shape_points("triangle", 50.0, 50.0, 10.0, 0.3)
    assert points[1, 0] == points[:, 0].min() and points[3, 0] == points[:, 0].max()
    assert points[2, 1] == points[:, 1].min() and points[4, 1] == points[:, 1].max()
    assert points[0].tolist() == [50.0, 50.0]


def test_synthetic_shapes_with_keypoints_read_back(tmp_path):
    make_shapes(tmp_path / "kp", num_images=6, size=64, seed=0, max_shapes=5, keypoints=True)
    ds = CocoDataset(tmp_path / "kp", keypoints=True)
    rows = np.concatenate([t["keypoints"] for t in ds.targets])
    assert rows.shape[1:] == (5, 3) and set(np.unique(rows[..., 2])) <= {1.0, 2.0}
    boxes = np.concatenate([t["boxes"] for t in ds.targets])
    # the left / right extreme points lie on the box's sides (within a pixel: visible box)
    assert np.all(rows[:, 1, 0] <= boxes[:, 0] + 1.0) and np.all(rows[:, 3, 0] >= boxes[:, 2] - 2.0)


def test_horizontal_flip_mirrors_and_swaps_pairs(tmp_path):
    root = make_coco(tmp_path / "d", edit=_with_keypoints)
    sample = CocoDataset(root, keypoints=True)[0]
    flip = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}], (0.5,) * 3, (0.5,) * 3)
    out = apply_pipeline(flip, sample)
    w = sample["image"].shape[1]
    before, after = sample["keypoints"][0], out["keypoints"][0].numpy()
    # left_eye (10, 10) becomes the right eye at x = W - 1 - 10, and vice versa
    assert after[2, :2].tolist() == [w - 1 - before[1, 0], before[1, 1]]
    assert after[1, :2].tolist() == [w - 1 - before[2, 0], before[2, 1]]
    assert after[:, 2].tolist() == [2, 2, 1]  # visibility moves with its keypoint
    assert after[0, 0] == w - 1 - before[0, 0]
    same = build_pipeline([{"name": "Resize", "height": 64, "width": 64}], (0.5,) * 3, (0.5,) * 3)
    resized = apply_pipeline(same, sample)["keypoints"][0].numpy()
    assert np.allclose(resized[:, :2], before[:, :2] * 2) and resized[:, 2].tolist() == [2, 1, 2]


def test_keypoints_pushed_out_get_visibility_zero_and_follow_kept_boxes(tmp_path):
    def edit(data):
        _with_keypoints(data)
        data["annotations"][0]["keypoints"] = [12, 12, 2, 1, 1, 2, 14, 10, 2]

    root = make_coco(tmp_path / "d", edit=edit)
    sample = CocoDataset(root, keypoints=True)[0]
    crop = build_pipeline([{"name": "Crop", "x_min": 4, "y_min": 4, "x_max": 32, "y_max": 32}],
                          (0.5,) * 3, (0.5,) * 3)  # fmt: skip
    out = apply_pipeline(crop, sample)["keypoints"][0].numpy()
    assert out[:, 2].tolist() == [2, 0, 2]
    assert out[0, :2].tolist() == [8, 8]
    gone = build_pipeline([{"name": "Crop", "x_min": 20, "y_min": 20, "x_max": 32, "y_max": 32}],
                          (0.5,) * 3, (0.5,) * 3)  # fmt: skip
    result = apply_pipeline(gone, sample)
    assert len(result["boxes"]) == 0 and result["keypoints"].shape == (0, 3, 3)


def test_vertical_flip_is_a_mirror_too():
    """Any mirror swaps the pairs (left/right of the object); two mirrors (a rotation) do not."""
    sample = {
        "image": np.zeros((20, 30, 3), np.uint8),
        "image_id": 1,
        "orig_size": (20, 30),
        "boxes": np.array([[2, 2, 20, 18]], np.float32),
        "labels": np.array([0]),
        "keypoints": np.array([[[5, 5, 2], [25, 5, 2], [15, 3, 1]]], np.float32),
        "keypoint_flip": [1, 0, 2],
    }
    pipe = build_pipeline([{"name": "VerticalFlip", "p": 1.0}], (0.5,) * 3, (0.5,) * 3)
    out = apply_pipeline(pipe, sample)["keypoints"][0].numpy()
    assert out[0, :2].tolist() == [25, 14] and out[1, :2].tolist() == [5, 14]
    rotate = build_pipeline(
        [{"name": "HorizontalFlip", "p": 1.0}, {"name": "VerticalFlip", "p": 1.0}],
        (0.5,) * 3,
        (0.5,) * 3,
    )
    out = apply_pipeline(rotate, sample)["keypoints"][0].numpy()
    assert out[0, :2].tolist() == [24, 14]  # point 0 stays point 0: two mirrors, no swap


def test_collate_keeps_keypoint_rows_per_image(tmp_path):
    root = make_coco(tmp_path / "d", edit=_with_keypoints)
    ds = CocoDataset(root, keypoints=True)
    pipe = build_pipeline([{"name": "Resize", "height": 32, "width": 32}], (0.5,) * 3, (0.5,) * 3)
    samples = [apply_pipeline(pipe, ds[i]) for i in range(2)]
    samples.append({k: v for k, v in apply_pipeline(pipe, ds[2]).items() if k != "keypoints"})
    batch = collate(samples)
    assert [tuple(k.shape) for k in batch["keypoints"]] == [(1, 3, 3)] * 3
    assert batch["has_keypoints"].tolist() == [True, True, False]
    assert torch.equal(batch["keypoints"][2], torch.zeros(1, 3, 3))
