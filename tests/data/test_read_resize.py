"""A pipeline's first resize done as Samples are read (visionkit/data/read_resize.py): the
cache holds photos at the size training uses, and every draw is the one it was without it."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from visionkit.data.datasets import TransformedDataset, seed_pipeline
from visionkit.data.read_resize import resize_on_read, resize_sample
from visionkit.data.sample_cache import SampleCache
from visionkit.data.transforms import build_pipeline
from visionkit.errors import SampleError

H, W = 600, 800  # a photo larger than the pipeline's size


def photo() -> dict:
    """A Sample with every spatial target: boxes, instance masks, label map, keypoints."""
    rng = np.random.default_rng(0)
    masks = np.zeros((3, H, W), np.uint8)
    masks[0, 20:300, 40:400] = 1
    masks[1, 250:590, 500:790] = 1
    masks[2, 0:3, 0:3] = 1  # a tiny instance: 3 px, under one pixel at 192 px
    return {
        "image": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "image_id": 7,
        "orig_size": (H, W),
        "path": "photos/7.jpg",
        "boxes": np.array([[40, 20, 400, 300], [500, 250, 790, 590], [0, 0, 3, 3]], np.float32),
        "labels": np.array([0, 1, 1]),
        "masks": masks,
        "semantic": rng.integers(0, 4, (H, W), dtype=np.uint8),
        "keypoints": np.array(
            [[[60, 30, 2], [390, 290, 2]], [[510, 260, 2], [799, 599, 1]], [[1, 1, 2], [2, 2, 2]]],
            np.float32,
        ),
        "keypoint_flip": np.array([1, 0]),
        "identities": np.array([5, -1, 2]),
    }


class Photos:
    """A reader of one photo that counts its reads."""

    def __init__(self) -> None:
        self.reads = 0

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        return photo()


TRAIN = [
    {"name": "LongestMaxSize", "max_size": 192},
    {"name": "RandomScale", "scale_limit": [-0.5, 0.5], "p": 1.0},
    {"name": "RandomCrop", "height": 192, "width": 192, "pad_if_needed": True},
    {"name": "HorizontalFlip", "p": 0.5},
]
VAL = [
    {"name": "SmallestMaxSize", "max_size": 160},
    {"name": "PadIfNeeded", "min_height": 224, "min_width": 224, "position": "top_left"},
]
RESIZE = [{"name": "Resize", "height": 120, "width": 200}]


@pytest.mark.parametrize("steps", [TRAIN, VAL, RESIZE], ids=["train", "val", "resize"])
def test_every_draw_is_the_one_made_from_the_photo_as_read(steps):
    """Images, masks and label maps bit for bit; boxes and keypoints to float rounding (their
    coordinates pass through albumentations' normalised form at two sizes)."""
    pipeline = build_pipeline(steps, (0.5,) * 3, (0.25,) * 3)
    assert pipeline.resize_on_read is not None
    early = TransformedDataset(Photos(), pipeline)
    without = build_pipeline(steps, (0.5,) * 3, (0.25,) * 3)
    without.resize_on_read = None
    late = TransformedDataset(Photos(), without)
    for seed in range(6):
        seed_pipeline(pipeline, seed)
        seed_pipeline(without, seed)
        a, b = early[0], late[0]
        assert a.keys() == b.keys()
        for key in ("image", "masks", "semantic", "labels", "identities"):
            assert torch.equal(a[key], b[key]), key
        for key in ("boxes", "keypoints"):
            torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=0)
        assert a["orig_size"] == b["orig_size"] == (H, W)
        assert a["image_size"] == b["image_size"]
    assert len(a["boxes"]) in (1, 2, 3)  # the crops keep some of the boxes


def test_the_cache_holds_the_photo_at_the_pipelines_first_size():
    photos = Photos()
    cache = SampleCache(budget=10**9)
    dataset = TransformedDataset(
        photos, build_pipeline(TRAIN, (0.5,) * 3, (0.25,) * 3), cache=cache
    )
    dataset[0], dataset[0]
    assert photos.reads == 1
    held = cache.samples[0]
    assert held["image"].shape == (144, 192, 3)  # 800 x 600 at a longest side of 192
    assert held["semantic"].shape == held["masks"].shape[1:] == (144, 192)
    assert cache.held < 144 * 192 * 8  # not the 600 x 800 photo (2.4 MB with its maps)
    scale = 192 / 800
    np.testing.assert_allclose(held["boxes"][:2], photo()["boxes"][:2] * scale, atol=1e-3)
    centre = (np.array([60.0, 30.0]) + 0.5) * scale - 0.5  # keypoints about pixel centres
    np.testing.assert_allclose(held["keypoints"][0, 0, :2], centre, atol=1e-4)
    assert held["orig_size"] == (H, W) and held["path"] == "photos/7.jpg"
    assert held["identities"].tolist() == [5, -1, 2] and held["labels"].tolist() == [0, 1, 1]
    np.testing.assert_array_equal(held["keypoint_flip"], [1, 0])


@pytest.mark.parametrize(
    "step",
    [
        A.LongestMaxSize(max_size=[128, 192]),  # a size drawn at random
        A.LongestMaxSize(max_size=192, p=0.5),
        A.RandomResizedCrop(size=(64, 64)),
        A.RandomScale(),
        A.HorizontalFlip(p=1.0),
        A.Normalize(),
    ],
    ids=lambda s: type(s).__name__ + (f" p={s.p}" if s.p < 1 else ""),
)
def test_steps_that_change_a_second_time_are_not_done_on_read(step):
    assert resize_on_read(step) is None


def test_a_pipeline_that_starts_otherwise_keeps_the_photos_as_read():
    mosaic = [
        {"name": "Mosaic", "target_size": [64, 64]},
        {"name": "LongestMaxSize", "max_size": 64},
    ]
    assert build_pipeline(mosaic, (0.5,) * 3, (0.25,) * 3).resize_on_read is None
    flip = [{"name": "HorizontalFlip"}, {"name": "LongestMaxSize", "max_size": 64}]
    assert build_pipeline(flip, (0.5,) * 3, (0.25,) * 3).resize_on_read is None
    assert build_pipeline([], (0.5,) * 3, (0.25,) * 3).resize_on_read is None


def test_a_sample_without_targets_keeps_its_keys():
    sample = {"image": np.zeros((50, 100, 3), np.uint8), "image_id": 1, "orig_size": (50, 100)}
    sample["class"] = 3
    out = resize_sample(resize_on_read(A.LongestMaxSize(max_size=20)), sample)
    assert out.keys() == sample.keys() and out["class"] == 3
    assert out["image"].shape == (10, 20, 3) and out["image"].flags.c_contiguous


def test_a_bad_sample_fails_naming_it():
    class Bad(Photos):
        def __getitem__(self, index: int) -> dict:
            sample = photo()
            sample["keypoints"] = sample["keypoints"][:2]  # rows for 2 of the 3 boxes
            return sample

    dataset = TransformedDataset(Bad(), build_pipeline(TRAIN, (0.5,) * 3, (0.25,) * 3))
    with pytest.raises(SampleError) as info:
        dataset[0]
    message = str(info.value)
    assert message.startswith("sample 0 (image id 7, photos/7.jpg): transform failed: ValueError")
    assert "keypoints of shape (2, 2, 3) for 3 boxes" in message


def test_a_photo_the_step_would_enlarge_is_kept_as_read():
    """A 32 px image under SmallestMaxSize(224) kept at 224 px would take 49 times the memory
    in the cache: it is kept small and enlarged at each draw, as before."""
    small = {"image": np.zeros((32, 32, 3), np.uint8), "image_id": 1, "orig_size": (32, 32)}
    pipeline = build_pipeline(
        [{"name": "SmallestMaxSize", "max_size": 224}], (0.5,) * 3, (0.25,) * 3
    )
    cache = SampleCache(budget=10**9)
    out = TransformedDataset([small], pipeline, cache=cache)[0]
    assert cache.samples[0]["image"].shape == (32, 32, 3)
    assert tuple(out["image"].shape) == (3, 224, 224)


@pytest.mark.parametrize(("shape", "size"), [((300, 2), 64), ((20, 4000), 192), ((1, 50), 16)])
def test_a_photo_one_pixel_thin_before_or_after_is_kept_as_read(shape, size):
    """Keypoints' flips are told by three corner points, which a 1-pixel side puts on one
    line: such a photo gets the pipeline it got before (the flip pairs swapped or not alike)."""
    resize = resize_on_read(A.LongestMaxSize(max_size=size))
    sample = {"image": np.zeros((*shape, 3), np.uint8), "image_id": 1, "orig_size": shape}
    assert resize_sample(resize, sample) is sample


@pytest.mark.parametrize("count", [0, 2, 4])
def test_instance_masks_that_do_not_match_the_boxes_are_named(count):
    class Miscounted(Photos):
        def __getitem__(self, index: int) -> dict:
            sample = photo()
            sample["masks"] = np.zeros((count, H, W), np.uint8)
            return sample

    dataset = TransformedDataset(Miscounted(), build_pipeline(TRAIN, (0.5,) * 3, (0.25,) * 3))
    with pytest.raises(SampleError, match=f"transform failed: ValueError: {count} instance masks "):
        dataset[0]
