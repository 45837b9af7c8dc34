"""``coco_evaluate`` against a ground truth holding a subset of the model's categories: the
predictions of the other categories are left out (COCOeval scores the ground truth's
categories only); a prediction for an unknown image stays an error."""

from __future__ import annotations

import logging
import math

import pytest

from visionkit.errors import DataError
from visionkit.evaluation.coco import coco_evaluate, load_coco_gt

pytestmark = pytest.mark.reliability


def ground_truth():
    """Two images with one square (category 1) each; category 2 is not in the file."""
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 40} for i in (1, 2)],
        "annotations": [
            {
                "id": 10 + i,
                "image_id": i,
                "category_id": 1,
                "bbox": [5, 5, 10, 10],
                "area": 100,
                "iscrowd": 0,
            }
            for i in (1, 2)
        ],  # fmt: skip
        "categories": [{"id": 1, "name": "square"}],
    }
    return load_coco_gt("subset.json", data)


def result(image_id, category_id, bbox=(5, 5, 10, 10), score=0.9):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


def test_predictions_of_categories_the_ground_truth_lacks_are_left_out(caplog):
    gt = ground_truth()
    squares = [result(1, 1), result(2, 1)]
    others = [result(1, 2, score=0.99), result(2, 2, (0, 0, 30, 30), score=0.95)]
    with caplog.at_level(logging.DEBUG, logger="visionkit.evaluation.coco"):
        details = {}
        mixed = coco_evaluate(gt, squares + others, [1, 2], details=details)
    assert mixed == coco_evaluate(gt, squares, [1, 2])
    assert mixed["mAP"] == pytest.approx(1.0) and details["cat_ids"] == [1]
    assert any(
        "2 predictions of categories not in the ground truth left out (categories [2])"
        in r.getMessage()
        for r in caplog.records
    )
    only_others = coco_evaluate(gt, others, [1, 2])  # nothing left: the square is missed
    assert only_others["mAP"] == 0.0 and not math.isnan(only_others["mAP"])


def test_a_prediction_for_an_unknown_image_is_still_an_error():
    with pytest.raises(DataError, match="predictions refer to images not in the ground truth") as e:
        coco_evaluate(ground_truth(), [result(1, 1), result(7, 2)], [1, 2])
    assert "image_id 7 (category_id 2)" in str(e.value)
