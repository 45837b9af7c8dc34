"""The embedded shapes dataset: COCO-valid, exact masks, balanced, deterministic, safe to rerun."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from visionkit.data.synthetic import BACKGROUNDS, CATEGORIES, make_shapes
from visionkit.errors import DataError

SIZE = 64
NUM_IMAGES = 40

# pycocotools' mask.decode under numpy 2: not ours, and harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), num_images=NUM_IMAGES, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def coco(shapes: Path) -> COCO:
    return COCO(str(shapes))


def _masks(coco: COCO, image_id: int) -> list[tuple[dict, np.ndarray]]:
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    return [(ann, mask_utils.decode(coco.annToRLE(ann)).astype(bool)) for ann in anns]


def test_schema(shapes: Path) -> None:
    data = json.loads(shapes.read_text())
    assert shapes.name == "annotations.json"
    assert list(data) == ["info", "image_classes", "categories", "images", "annotations"]
    assert data["image_classes"] == {"background": ["plain", "gradient", "noise", "stripes"]}
    assert data["categories"] == [
        {"id": 1, "name": "circle", "supercategory": "shape"},
        {"id": 2, "name": "square", "supercategory": "shape"},
        {"id": 3, "name": "triangle", "supercategory": "shape"},
    ]
    info = data["info"]
    assert info["generator"] == "visionkit.data.synthetic.make_shapes"
    assert {k: info[k] for k in ("num_images", "size", "seed", "min_shapes", "max_shapes")} == {
        "num_images": NUM_IMAGES,
        "size": SIZE,
        "seed": 0,
        "min_shapes": 1,
        "max_shapes": 4,
    }
    assert [img["id"] for img in data["images"]] == list(range(1, NUM_IMAGES + 1))
    for img in data["images"]:
        assert set(img) == {"id", "file_name", "width", "height", "background"}
        assert img["file_name"] == f"images/{img['id']:06d}.png"
        assert (img["width"], img["height"]) == (SIZE, SIZE)
        assert img["background"] in BACKGROUNDS
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    for ann in data["annotations"]:
        assert set(ann) == {
            "id",
            "image_id",
            "category_id",
            "bbox",
            "area",
            "segmentation",
            "iscrowd",
        }
        assert ann["iscrowd"] == 0
        assert ann["category_id"] in (1, 2, 3)
        assert all(isinstance(v, float) for v in ann["bbox"])
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["segmentation"]["size"] == [SIZE, SIZE]


def test_images_are_rgb_pngs_of_the_requested_size(shapes: Path) -> None:
    data = json.loads(shapes.read_text())
    files = sorted((shapes.parent / "images").iterdir())
    assert [f"images/{f.name}" for f in files] == [img["file_name"] for img in data["images"]]
    for path in files:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (SIZE, SIZE))


def test_boxes_and_areas_match_the_masks(coco: COCO) -> None:
    assert len(coco.getAnnIds()) > NUM_IMAGES
    for image_id in coco.getImgIds():
        for ann, mask in _masks(coco, image_id):
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            x0, y0, x1, y1 = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1  # exclusive ends
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0], ann["id"]
            assert ann["area"] == mask.sum(), ann["id"]
            assert ann["area"] >= 16


def test_masks_are_exactly_the_visible_pixels(coco: COCO, shapes: Path) -> None:
    """Each visible mask is one uniform colour that differs from the pixels around it."""
    for image_id in coco.getImgIds():
        pixels = np.asarray(Image.open(shapes.parent / coco.imgs[image_id]["file_name"]))
        masks = _masks(coco, image_id)
        if masks:
            assert np.sum([m for _, m in masks], axis=0).max() == 1  # no pixel in two instances
        for ann, mask in masks:
            colours = np.unique(pixels[mask], axis=0)
            assert len(colours) == 1, f"annotation {ann['id']}: mask covers several colours"
            ring = np.zeros_like(mask)  # pixels 4-adjacent to the mask, outside it
            ring[1:] |= mask[:-1]
            ring[:-1] |= mask[1:]
            ring[:, 1:] |= mask[:, :-1]
            ring[:, :-1] |= mask[:, 1:]
            ring &= ~mask
            assert not (pixels[ring] == colours[0]).all(axis=1).all(), ann["id"]


def test_every_category_and_background_appears(coco: COCO, shapes: Path) -> None:
    data = json.loads(shapes.read_text())
    assert {ann["category_id"] for ann in coco.loadAnns(coco.getAnnIds())} == {1, 2, 3}
    assert len(CATEGORIES) == 3
    backgrounds = [img["background"] for img in data["images"]]
    assert Counter(backgrounds) == {name: NUM_IMAGES // 4 for name in BACKGROUNDS}
    for start in range(0, NUM_IMAGES, 4):  # every block of four holds each class once
        assert sorted(backgrounds[start : start + 4]) == sorted(BACKGROUNDS)


def test_backgrounds_look_like_their_class(coco: COCO, shapes: Path) -> None:
    for image_id in coco.getImgIds():
        img = coco.imgs[image_id]
        pixels = np.asarray(Image.open(shapes.parent / img["file_name"]))
        covered = np.zeros((SIZE, SIZE), dtype=bool)
        for _, mask in _masks(coco, image_id):
            covered |= mask
        distinct = len(np.unique(pixels[~covered], axis=0))
        kind = img["background"]
        if kind == "plain":
            assert distinct == 1, image_id
        elif kind == "stripes":
            assert distinct == 2, image_id
        else:
            assert distinct > 20, image_id
            free_rows = pixels[~covered.any(axis=1)].astype(int)  # rows without shapes
            if len(free_rows) == 0:
                continue
            steps = np.abs(np.diff(free_rows, axis=1)).max()
            if kind == "gradient":
                assert steps <= 8, image_id  # smooth
            else:
                assert steps > 8, image_id  # noisy


def test_shape_counts_respect_the_bounds(tmp_path: Path, coco: COCO) -> None:
    counts = [len(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()]
    assert max(counts) <= 4
    assert sum(c >= 1 for c in counts) >= 0.9 * len(counts)  # a shape may be skipped, rarely
    assert len(set(counts)) >= 3

    path = make_shapes(tmp_path, num_images=30, size=48, seed=5, min_shapes=0, max_shapes=2)
    data = json.loads(path.read_text())
    per_image = Counter(ann["image_id"] for ann in data["annotations"])
    counts = [per_image[img["id"]] for img in data["images"]]
    assert max(counts) <= 2
    assert 0 in counts  # negatives
    assert data["info"]["min_shapes"] == 0


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_deterministic(tmp_path: Path) -> None:
    args = {"num_images": 10, "size": 48}
    first = _snapshot(make_shapes(tmp_path / "a", seed=7, **args).parent)
    again = _snapshot(make_shapes(tmp_path / "b", seed=7, **args).parent)
    assert first == again
    assert len(first) == 11

    other = _snapshot(make_shapes(tmp_path / "c", seed=9, **args).parent)
    assert other["annotations.json"] != first["annotations.json"]
    assert all(other[name] != first[name] for name in first if name.startswith("images/"))
    # The seed changes the content, not only the background order: images of the same class
    # at the same index differ too.
    classes = [
        [img["background"] for img in json.loads(snap["annotations.json"])["images"]]
        for snap in (first, other)
    ]
    same = [i + 1 for i, (a, b) in enumerate(zip(*classes, strict=True)) if a == b]
    assert same
    assert all(other[f"images/{i:06d}.png"] != first[f"images/{i:06d}.png"] for i in same)

    prefix = _snapshot(make_shapes(tmp_path / "d", seed=7, num_images=4, size=48).parent)
    assert all(prefix[f"images/{i:06d}.png"] == first[f"images/{i:06d}.png"] for i in range(1, 5))


def test_rerun_replaces_a_previous_dataset(tmp_path: Path) -> None:
    make_shapes(tmp_path, num_images=6, size=32, seed=1)
    path = make_shapes(tmp_path, num_images=3, size=32, seed=2)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        "000001.png",
        "000002.png",
        "000003.png",
    ]
    assert json.loads(path.read_text())["info"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.json", "images"]


def test_refuses_to_overwrite_other_data(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cat.jpg").write_bytes(b"user data")
    (tmp_path / "annotations.json").write_text('{"images": [], "info": {}}')
    (tmp_path / "labels.txt").write_text("user data")
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        make_shapes(tmp_path, num_images=2, size=32)
    message = str(err.value)
    for name in ("cat.jpg", "annotations.json", "labels.txt"):
        assert name in message
    assert _snapshot(tmp_path) == before


def test_writes_into_an_existing_empty_folder_with_a_progress_bar(tmp_path: Path) -> None:
    path = make_shapes(tmp_path, num_images=2, size=32, progress=True)
    assert path == tmp_path / "annotations.json"
    assert len(json.loads(path.read_text())["images"]) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": -1},
        {"size": 8},
        {"seed": -3},
        {"min_shapes": 3, "max_shapes": 2},
        {"min_shapes": -1},
        {"num_images": 2.5},
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_shapes(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_named_annotation_file_turns_generation_off(tmp_path: Path) -> None:
    """A shapes recipe pointed at the user's own data (``annotations`` given) never generates
    shapes into their folder: the missing file is reported instead."""
    from visionkit.build import build_dataset

    images = tmp_path / "my_images"
    images.mkdir()
    spec = {
        "format": "coco",
        "images": str(images),
        "annotations": str(tmp_path / "train.json"),
        "synthetic": {"num_images": 4, "size": 32},
    }
    with pytest.raises(DataError, match="train.json"):
        build_dataset(spec)
    assert list(images.iterdir()) == []
    # without an annotation file, the same spec generates the shapes there
    spec.pop("annotations")
    assert len(build_dataset(spec)) == 4


def test_a_folder_of_an_older_format_version_is_generated_again(tmp_path: Path) -> None:
    """Keypoints changed meaning in format 2 (tests/data/test_keypoints_data.py): a folder
    generated before is replaced when a config asks for it, one of the current version kept."""
    from visionkit.build import build_dataset

    spec = {
        "format": "coco",
        "images": str(tmp_path / "kp"),
        "synthetic": {"num_images": 3, "size": 32, "keypoints": True},
    }
    build_dataset(spec)
    path = tmp_path / "kp" / "annotations.json"
    data = json.loads(path.read_text())
    data["info"]["format_version"] = 1
    data["annotations"][0]["keypoints"] = [0.0] * 15
    path.write_text(json.dumps(data))
    build_dataset(spec)
    regenerated = json.loads(path.read_text())
    assert regenerated["info"]["format_version"] == 2
    assert regenerated["annotations"][0]["keypoints"] != [0.0] * 15
    stamp = path.stat().st_mtime_ns
    build_dataset(spec)
    assert path.stat().st_mtime_ns == stamp
