"""COCO semantic maps: ``iscrowd`` regions are IGNORE_PIXEL (255) whatever ``ignore_index`` the
reader is given (one value for "no label" from every reader, as the mask folder's)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.helpers import SIZE, make_coco
from visionkit.data.batch import IGNORE_PIXEL
from visionkit.data.readers.coco import CocoDataset
from visionkit.errors import ConfigError

pytestmark = pytest.mark.reliability


def add_crowd(data):
    """A crowd region (an RLE-free polygon, rows and columns 20..27) on image 1."""
    data["annotations"].append(
        {
            "id": 900,
            "image_id": 1,
            "category_id": 1,
            "bbox": [20, 20, 8, 8],
            "area": 64,
            "iscrowd": 1,
            "segmentation": [[20, 20, 28, 20, 28, 28, 20, 28]],
        }
    )


@pytest.mark.parametrize("ignore_index", [IGNORE_PIXEL, 7, 0])
def test_crowd_regions_are_ignore_pixel_whatever_ignore_index(tmp_path, caplog, ignore_index):
    root = make_coco(tmp_path / "coco", num_images=2, edit=add_crowd)
    with caplog.at_level(logging.WARNING, logger="visionkit.data.readers.coco"):
        dataset = CocoDataset(root, semantic=True, ignore_index=ignore_index)
    semantic = dataset[0]["semantic"]
    assert semantic.shape == (SIZE, SIZE)
    assert (semantic[21:27, 21:27] == IGNORE_PIXEL).all()
    assert set(np.unique(semantic).tolist()) <= {0, 1, 2, IGNORE_PIXEL}
    assert (dataset.load_semantic(1) == semantic).all()
    unused = [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()]
    if ignore_index == IGNORE_PIXEL:
        assert not unused
    else:
        assert unused == [
            f"{root / 'annotations.json'}: ignore_index {ignore_index} is not used: crowd "
            "regions of the semantic map are always 255, which heads and metrics ignore"
        ]


def brush_masks(data):
    """Every object as CVAT's COCO 1.0 export writes a mask drawn with its brush: an
    uncompressed RLE with iscrowd 1 (Datumaro's exporter marks every RLE a crowd)."""
    from pycocotools import mask as mask_utils

    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        mask = np.zeros((SIZE, SIZE), np.uint8, order="F")
        mask[y : y + h, x : x + w] = 1
        ann["segmentation"] = {"size": [SIZE, SIZE], "counts": _uncompressed(mask)}
        ann["iscrowd"] = 1
        assert mask_utils.area(mask_utils.encode(mask)) == w * h


def _uncompressed(mask):
    flat = mask.flatten(order="F").tolist()
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    return [*counts, run]


def test_a_file_of_crowds_only_is_named_and_crowds_objects_reads_them_as_objects(tmp_path, caplog):
    root = make_coco(tmp_path / "cvat", num_images=2, edit=brush_masks)
    with caplog.at_level(logging.WARNING):
        ignored = CocoDataset(root, masks=True)
    assert [len(t["boxes"]) for t in ignored.targets] == [0, 0]  # COCO's meaning: no object
    note = (
        "2 crowd regions (iscrowd: 1): not boxes to learn; evaluation ignores detections "
        "inside them, as COCO does (2 of 2 annotations; if they are objects, as CVAT's COCO "
        "1.0 export writes masks drawn with its brush, read them as objects: crowds: objects "
        "in the dataset entry)"
    )
    assert note in ignored.report.notes
    assert f"{root / 'annotations.json'}: {note}" in caplog.messages
    objects = CocoDataset(root, masks=True, crowds="objects")
    sample = objects[0]
    assert len(sample["boxes"]) == 1 and sample["masks"].shape == (1, SIZE, SIZE)
    assert int(sample["masks"].sum()) == (SIZE // 4) ** 2
    truth = objects.coco_ground_truth()  # what COCOeval scores: objects, not crowds
    assert [a["iscrowd"] for a in truth["annotations"]] == [0, 0]
    assert [a["iscrowd"] for a in ignored.coco_ground_truth()["annotations"]] == [1, 1]
    assert not any("crowd" in n for n in objects.report.notes)
    with pytest.raises(ConfigError, match="crowds: 'learn' is not one of ignore, objects"):
        CocoDataset(root, crowds="learn")
