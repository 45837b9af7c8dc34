"""Keypoints in the data path: the COCO reader's checks, the synthetic shapes' keypoints,
albumentations with flip pairs, and collate."""

from __future__ import annotations

import math

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


def test_the_report_counts_each_keypoint_and_each_identity(tmp_path):
    """What check-data prints of a keypoint / identity set (4 boxes: make_coco's one per
    image): the boxes labelling each keypoint, those labelling none, and the identities."""

    def edit(data):
        _with_keypoints(data)
        data["annotations"][0]["keypoints"] = [12, 12, 2, 0, 0, 0, 0, 0, 0]
        data["annotations"][1]["keypoints"] = [0] * 9
        for ann, identity in zip(data["annotations"], ["a", "a", "b", None], strict=True):
            ann["num_keypoints"] = sum(v > 0 for v in ann["keypoints"][2::3])
            ann["identity"] = identity

    ds = CocoDataset(make_coco(tmp_path / "d", edit=edit), keypoints=True, identities=True)
    assert ds.report.notes == [
        "keypoints: 3 per box; boxes labelling each (v > 0): nose 3, left_eye 2, right_eye 2",
        "boxes without a labelled keypoint: 1 of 4",
        "identities: 2 on 3 of 4 boxes (boxes per identity: min 1, median 1.5, max 2; seen "
        "once: 1)",
    ]
    assert "  boxes without a labelled keypoint: 1 of 4" in ds.report.render()


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


@pytest.mark.parametrize("name", ["square", "triangle"])
def test_shape_points_lie_on_the_outline_straight_out_from_the_centre(name):
    sides = 4 if name == "square" else 3
    for rotation in np.linspace(0.0, 2.0 * math.pi, 37):  # ties of vertices included (45°)
        points = shape_points(name, 50.0, 50.0, 10.0, rotation)
        assert points[0].tolist() == [50.0, 50.0]
        angles = rotation + 2.0 * math.pi * np.arange(sides) / sides
        vx, vy = 10.0 * np.cos(angles), 10.0 * np.sin(angles)

        def inside(x, y, vx=vx, vy=vy):  # the drawing's half-plane test (synthetic._shape)
            return all(
                (vx[(k + 1) % sides] - vx[k]) * (y - 50.0 - vy[k])
                - (vy[(k + 1) % sides] - vy[k]) * (x - 50.0 - vx[k])
                >= 0.0
                for k in range(sides)
            )

        for (x, y), (dx, dy) in zip(points[1:], [(-1, 0), (0, -1), (1, 0), (0, 1)], strict=True):
            assert inside(x - 1e-6 * dx, y - 1e-6 * dy) and not inside(x + 1e-6 * dx, y + 1e-6 * dy)
        assert points[1, 1] == points[3, 1] == 50.0 and points[2, 0] == points[4, 0] == 50.0


def test_shape_points_move_continuously_through_a_tie_of_vertices():
    # a square at 45° has two leftmost vertices; its left point must not jump between them
    before = shape_points("square", 50.0, 50.0, 10.0, math.pi / 4 - 1e-3)
    after = shape_points("square", 50.0, 50.0, 10.0, math.pi / 4 + 1e-3)
    assert np.abs(before - after).max() < 0.01


def test_synthetic_shapes_with_keypoints_read_back(tmp_path):
    make_shapes(tmp_path / "kp", num_images=6, size=64, seed=0, max_shapes=5, keypoints=True)
    ds = CocoDataset(tmp_path / "kp", keypoints=True)
    rows = np.concatenate([t["keypoints"] for t in ds.targets])
    assert rows.shape[1:] == (5, 3) and set(np.unique(rows[..., 2])) <= {1.0, 2.0}
    boxes = np.concatenate([t["boxes"] for t in ds.targets])
    # visible left / right points lie in the box's x range (the box is that of the visible
    # pixels: a visible point is within 2 px of one), on the centre's row
    left, right = rows[:, 1, 2] == 2, rows[:, 3, 2] == 2
    assert left.any() and right.any()
    assert np.all(rows[left, 1, 0] >= boxes[left, 0] - 2.5)
    assert np.all(rows[right, 3, 0] <= boxes[right, 2] + 2.5)
    assert np.all(rows[:, 1, 0] <= rows[:, 0, 0]) and np.allclose(rows[:, 1, 1], rows[:, 0, 1])


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
    twice = (before[:, :2] + 0.5) * 2 - 0.5  # pixel indices, scaled about pixel centres
    assert np.allclose(resized[:, :2], twice) and resized[:, 2].tolist() == [2, 1, 2]


def _centroid(image):
    """x, y of the brightness centroid of channel 0 of a ``[3, H, W]`` image, as pixel indices."""
    weights = image[0].double()
    ys, xs = torch.meshgrid(
        torch.arange(weights.shape[0]), torch.arange(weights.shape[1]), indexing="ij"
    )
    return [
        float((xs * weights).sum() / weights.sum()),
        float((ys * weights).sum() / weights.sum()),
    ]


@pytest.mark.parametrize(
    "steps",
    [
        [{"name": "Resize", "height": 24, "width": 48}],  # x 2, x 3
        [{"name": "Resize", "height": 24, "width": 48}, {"name": "HorizontalFlip", "p": 1.0}],
        [{"name": "HorizontalFlip", "p": 1.0}, {"name": "Resize", "height": 24, "width": 48}],
        [{"name": "LongestMaxSize", "max_size": 8}],  # x 0.5
        [{"name": "LongestMaxSize", "max_size": 8}, {"name": "HorizontalFlip", "p": 1.0}],
    ],
)
def test_a_resized_keypoint_stays_on_the_pixels_it_labels(steps):
    """A bright 2x2 block labelled at its centre (pixel indices 6.5, 4.5): after a resize,
    before or after a flip, the keypoint is where the block went (its brightness centroid),
    not half a pixel times the scale beside it (albumentations scales keypoints from the
    corner but flips them as pixel indices)."""
    image = np.zeros((12, 16, 3), np.uint8)
    image[4:6, 6:8] = 255
    sample = {
        "image": image,
        "image_id": 1,
        "orig_size": (12, 16),
        "boxes": np.array([[2, 2, 12, 10]], np.float32),
        "labels": np.array([0]),
        "keypoints": np.array([[[6.5, 4.5, 2]]], np.float32),
    }
    out = apply_pipeline(build_pipeline(steps, (0.0,) * 3, (1.0,) * 3), sample)
    assert out["keypoints"][0, 0, :2].tolist() == pytest.approx(_centroid(out["image"]), abs=1e-3)


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


def test_flip_pairs_of_mpii_style_names_and_a_warning_for_a_side_without_its_other(tmp_path):
    assert flip_index(["head", "l_hand", "r_hand", "hand_L", "hand_R"]) == [0, 2, 1, 4, 3]

    def unpaired(data):
        _with_keypoints(data)
        for c in data["categories"]:
            c["keypoints"] = ["nose", "left_eye", "right_ear"]

    ds = CocoDataset(make_coco(tmp_path / "d", edit=unpaired), keypoints=True)
    assert [str(p) for p in ds.report.warnings if p.kind == "unpaired keypoint"] == [
        "category id 1 ('square'): 'left_eye' has no 'right_eye' among the keypoints: a "
        "horizontal flip leaves it in place instead of swapping it",
        "category id 1 ('square'): 'right_ear' has no 'left_ear' among the keypoints: a "
        "horizontal flip leaves it in place instead of swapping it",
    ]


def test_a_category_of_another_keypoint_list_is_one_error_not_one_per_annotation(tmp_path):
    def differ(data):
        _with_keypoints(data)
        data["categories"][1]["keypoints"] = NAMES[:2]

    with pytest.raises(AnnotationError) as err:
        CocoDataset(make_coco(tmp_path / "d", edit=differ), keypoints=True)
    assert "1 problem" in str(err.value) and "differ from ['nose', 'left_eye'" in str(err.value)


def keypoint_config(**data) -> dict:
    """simple_cnn -> FPN -> a one-conv fcos_keypoints head ``pose`` on the ``data`` splits."""
    head = {"name": "fcos_keypoints", "num_classes": None, "num_convs": 1}
    return {
        "model": {
            "backbone": {"name": "simple_cnn"},
            "neck": {"name": "fpn", "out_channels": 16},
            "heads": {"pose": head},
        },
        "data": data,
    }


def test_a_keypoint_head_takes_names_skeleton_and_count_from_the_data(tmp_path):
    from visionkit.build import build_datasets, build_model
    from visionkit.config import load_config
    from visionkit.errors import ConfigError

    root = make_coco(tmp_path / "d", edit=_with_keypoints)
    config = keypoint_config(train={"format": "coco", "images": str(root)})
    head = config["model"]["heads"]["pose"]
    cfg = load_config(config)
    model = build_model(cfg, build_datasets(cfg.data, needs=["boxes", "keypoints"]))
    pose = model.heads["pose"]
    assert (pose.num_keypoints, pose.keypoint_names, pose.skeleton) == (3, NAMES, [[1, 2], [1, 3]])
    assert model.meta["config"]["model"]["heads"]["pose"]["keypoint_names"] == NAMES
    head["keypoint_names"] = ["nose", "eye_a", "eye_b"]
    cfg = load_config(config)
    with pytest.raises(ConfigError, match="keypoint_names: .* but the data's categories name"):
        build_model(cfg, build_datasets(cfg.data, needs=["boxes", "keypoints"]))
    # a num_keypoints of another count was replaced by the data's without a word; 17, the
    # head's count without data, even after that was refused
    del head["keypoint_names"]
    for count in (5, 17):
        head["num_keypoints"] = count
        cfg = load_config(config)
        with pytest.raises(ConfigError) as info:
            build_model(cfg, build_datasets(cfg.data, needs=["boxes", "keypoints"]))
        problem = f"model.heads.pose.num_keypoints: {count}, but the data's categories define 3"
        assert problem in str(info.value)


def test_an_evaluation_set_naming_the_keypoints_in_another_order_is_refused(tmp_path):
    """Validation keypoints [nose, right_eye, left_eye] scored kpt_mAP 0 against a model of
    [nose, left_eye, right_eye], silently (OKS compares the points in order)."""
    from visionkit.build import build_datasets, build_evaluators, build_model
    from visionkit.config import load_config
    from visionkit.errors import ConfigError

    def reordered(data):
        _with_keypoints(data)
        for c in data["categories"]:
            c["keypoints"] = ["nose", "right_eye", "left_eye"]

    train = make_coco(tmp_path / "t", edit=_with_keypoints)
    val = make_coco(tmp_path / "v", edit=reordered)
    config = keypoint_config(
        train={"format": "coco", "images": str(train)},
        val={"format": "coco", "images": str(val)},
    )
    cfg = load_config(config)
    datasets = build_datasets(cfg.data, needs=["boxes", "keypoints"])
    model = build_model(cfg, datasets)
    with pytest.raises(ConfigError) as info:
        build_evaluators(model, datasets["val"])
    assert "names its keypoints ['nose', 'right_eye', 'left_eye'], the model ['nose', " in str(
        info.value
    )


def test_a_labelled_keypoint_outside_its_image_is_a_warning(tmp_path):
    def outside(data):
        _with_keypoints(data)
        data["annotations"][0]["keypoints"] = [12, -3, 2, 10, 10, 1, 33, 10, 2]  # 32 px images
        data["annotations"][1]["keypoints"] = [-0.3, 5, 2, 5, -0.5, 2, 31.4, 31.4, 2]  # on it

    ds = CocoDataset(make_coco(tmp_path / "d", edit=outside), keypoints=True)
    assert [str(p) for p in ds.report.warnings] == [
        "annotation id 101 (image id 1): 'nose' at (12, -3), 'right_eye' at (33, 10) outside "
        "the 32x32 image (x in -0.5..32, y in -0.5..32): trained as not labelled (v = 0)"
    ]
    # x = -0.3 was warned as outside, and trained as labelled: a warned point is one
    # training leaves out, and a point on the image (pixel 0 reaches to -0.5) is neither
    for index, labelled in ((0, [False, True, False]), (1, [True, True, True])):
        sample = apply_pipeline(build_pipeline([], (0.5,) * 3, (0.5,) * 3), ds[index])
        assert (sample["keypoints"][0, :, 2] > 0).tolist() == labelled
    expected = [[-0.3, 5, 2], [5, -0.5, 2], [31.4, 31.4, 2]]  # left as they are
    np.testing.assert_allclose(ds[1]["keypoints"][0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [{"name": "Resize", "height": 64, "width": 48}],
        [{"name": "HorizontalFlip", "p": 1.0}, {"name": "Resize", "height": 16, "width": 16}],
    ],
)
def test_a_keypoint_on_the_far_edge_of_its_image_is_kept_on_the_last_pixel(tmp_path, steps):
    # x = W (y = H), the edge as annotators counting pixel edges write it, was dropped in
    # training (visibility 0: half a pixel past the last pixel centre) and warned of
    def edge(data):
        _with_keypoints(data)
        data["annotations"][0]["keypoints"] = [32, 12, 2, 10, 32, 1, 31.75, 31.5, 2]  # 32 px

    ds = CocoDataset(make_coco(tmp_path / "d", edit=edge), keypoints=True)
    assert ds.report.warnings == []
    sample = ds[0]
    # 31.5 is on the last pixel already and stays (31.3 was moved to 31 too)
    assert sample["keypoints"][0].tolist() == [[31, 12, 2], [10, 31, 1], [31, 31.5, 2]]
    out = apply_pipeline(build_pipeline(steps, (0.5,) * 3, (0.5,) * 3), sample)
    h, w = out["image"].shape[-2:]
    points = out["keypoints"][0].numpy()
    assert (points[:, 2] > 0).all()  # none dropped (a flip swaps the eyes)
    assert (points[:, 0] <= w - 0.5).all() and (points[:, 1] <= h - 0.5).all()  # on the image


def test_on_bad_image_skip_leaves_a_missing_image_out_of_a_keypoint_set(tmp_path):
    root = make_coco(tmp_path / "d", edit=_with_keypoints)
    (root / "images" / "2.png").unlink()
    ds = CocoDataset(root, keypoints=True, on_bad_image="skip")
    assert len(ds) == 3 and [s["image_id"] for s in ds] == [1, 3, 4]


def test_init_from_a_checkpoint_of_the_same_keypoints_in_another_order_is_refused(tmp_path):
    """Fine-tuning a keypoint checkpoint on data naming the same keypoints in another order
    loaded every weight without a word: each point started from another point's weights (a
    left eye from the right eye's). As for classes in another order: an error naming both."""
    from visionkit.engine.runner import train
    from visionkit.errors import DataError

    root = make_coco(tmp_path / "d", edit=_with_keypoints)
    config = keypoint_config(
        train={"format": "coco", "images": str(root)}, val={"format": "coco", "images": str(root)}
    )
    config["data"].update(image_size=32, batch_size=2, num_workers=0)
    config.update(name="a", output_dir=str(tmp_path / "runs"))
    config["trainer"] = {"max_steps": 1, "accelerator": "cpu", "enable_progress_bar": False}
    run_dir, _ = train(config)

    def reordered(data):
        _with_keypoints(data)
        data["categories"] = [
            {**c, "keypoints": ["nose", "right_eye", "left_eye"]} for c in data["categories"]
        ]

    other = make_coco(tmp_path / "e", edit=reordered)
    config["data"]["train"] = {"format": "coco", "images": str(other)}
    config["data"]["val"] = {"format": "coco", "images": str(other)}
    config["model"]["init_from"] = str(run_dir / "checkpoints" / "best.ckpt")
    config["name"] = "b"
    with pytest.raises(DataError) as info:
        train(config)
    assert "head 'pose' was trained on the keypoints ['nose', 'left_eye', 'right_eye']" in str(
        info.value
    )
    assert "the same keypoints in another order" in str(info.value)
    assert "'right_eye' 2 -> 1, 'left_eye' 1 -> 2" in str(info.value)


def _resized(points: np.ndarray) -> list:
    import albumentations as A

    from visionkit.data.keypoint_transforms import keypoint_params

    resize = A.Compose([A.Resize(8, 8)], keypoint_params=keypoint_params())
    return resize(image=np.zeros((4, 4, 3), np.uint8), keypoints=points)["keypoints"].tolist()


def test_pixel_centre_scaling_survives_a_nested_block_and_stays_in_its_thread():
    """The scaling was swapped in and out of albumentations for every block: an inner block
    put the library's back for the rest of the outer one, and another thread's plain
    albumentations pipeline got visionkit's scaling while a visionkit pipeline ran."""
    import threading

    from visionkit.data.keypoint_transforms import pixel_index_scaling

    points = np.array([[0.0, 3.0]])
    library, centred = [[0.0, 6.0]], [[0.5, 6.5]]
    with pixel_index_scaling():
        with pixel_index_scaling():
            assert _resized(points) == centred
        assert _resized(points) == centred  # after the inner block, still the outer's
    assert _resized(points) == library

    inside, done = threading.Event(), threading.Event()

    def visionkit_pipeline():
        with pixel_index_scaling():
            inside.set()
            done.wait(10)

    worker = threading.Thread(target=visionkit_pipeline)
    worker.start()
    try:
        assert inside.wait(10)
        assert _resized(points) == library  # this thread is in no block
    finally:
        done.set()
        worker.join()
