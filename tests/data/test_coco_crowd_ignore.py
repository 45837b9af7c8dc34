"""COCO semantic maps: ``iscrowd`` regions are IGNORE_PIXEL (255) whatever ``ignore_index`` the
reader is given (one value for "no label" from every reader, as the mask folder's)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.helpers import SIZE, make_coco
from visionkit.data.batch import IGNORE_PIXEL
from visionkit.data.readers.coco import CocoDataset

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
