"""An annotation with a segmentation but no usable ``bbox`` (none, ``[0, 0, 0, 0]``, zero
width), as Ultralytics and most converters write them, takes the tight box of its
segmentation, with a ``box from segmentation`` warning, and is scored with that box: before,
a missing bbox stopped the reader and a zero one was dropped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from tests.helpers import SIZE, detection_config, make_coco, run
from visionkit.cli.evaluate import report, summary_lines
from visionkit.data.readers.coco import CocoDataset
from visionkit.evaluation.tasks import TASKS

pytestmark = pytest.mark.reliability

Q = SIZE // 4  # make_coco's square: [Q, Q, Q, Q], its polygon the same square


def rle_of_rectangle(x0: int, y0: int, x1: int, y1: int) -> dict:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def without_boxes(data: dict) -> None:
    anns = data["annotations"]
    del anns[0]["bbox"]  # id 101: polygon, no bbox
    anns[1]["bbox"] = [0, 0, 0, 0]  # id 102: RLE, a zero box of area 0 (Label Studio's brush)
    anns[1]["segmentation"] = rle_of_rectangle(6, 4, 20, 12)
    anns[1]["area"] = 0
    anns[2]["bbox"] = [Q, Q, 0, Q]  # id 103: polygon, zero width
    # id 104: a usable box of its own


@pytest.fixture
def root(tmp_path):
    return make_coco(tmp_path / "data", edit=without_boxes)


def test_check_data_names_the_boxes_taken_from_segmentations(root, capsys):
    code, out, _ = run(["check-data", "--format", "coco", "--images", root], capsys)
    assert code == 0, out  # a warning: training goes on
    assert (
        f"box from segmentation: {root / 'annotations.json'}: 3 annotations without a usable "
        "bbox (missing, or zero or negative width or height) take the tight box of their "
        "segmentation, for training and evaluation: annotation ids 101, 102, 103"
    ) in out
    assert "bad box" not in out and "box dropped" not in out


def test_training_and_validation_go_on(root, tmp_path, capsys):
    config = detection_config(tmp_path / "config.yaml", root, root)
    code, _, err = run(["train", "--config", config, "--output-dir", tmp_path / "run"], capsys)
    assert code == 0, err[-2000:]
    assert ": box from segmentation: 3 annotations" in err  # logged, once per file read


@pytest.mark.parametrize("masks", [False, True])
def test_the_samples_carry_the_tight_box_of_the_segmentation(root, masks):
    dataset = CocoDataset(root, masks=masks)
    boxes = [dataset[i]["boxes"].tolist() for i in range(4)]
    square = [Q, Q, 2 * Q, 2 * Q]
    assert boxes == [[square], [[6, 4, 20, 12]], [square], [square]]
    (warning,) = dataset.report.warnings
    assert warning.kind == "box from segmentation"


def test_an_annotation_without_box_or_segmentation_is_treated_as_before(tmp_path, capsys):
    def broken(data):
        del data["annotations"][0]["bbox"]  # and no segmentation: an error, as before
        del data["annotations"][0]["segmentation"]
        data["annotations"][1]["bbox"] = [0, 0, 0, 0]  # an empty segmentation: dropped
        data["annotations"][1]["segmentation"] = []

    root = make_coco(tmp_path / "data", edit=broken)
    code, out, _ = run(["check-data", "--format", "coco", "--images", root], capsys)
    assert code == 1
    assert "bad box: annotation id 101 (image id 1): bbox None" in out
    assert "box dropped: annotation id 102" in out and "box from segmentation" not in out


def test_a_missing_box_whose_segmentation_gives_none_says_why(tmp_path, capsys):
    def outside(data):
        del data["annotations"][0]["bbox"]  # a polygon wholly right of the image
        data["annotations"][0]["segmentation"] = [[SIZE + 8, 2, SIZE + 12, 2, SIZE + 12, 6]]

    root = make_coco(tmp_path / "data", edit=outside)
    code, out, _ = run(["check-data", "--format", "coco", "--images", root], capsys)
    assert code == 1
    assert (
        "bad box: annotation id 101 (image id 1): bbox None: expected [x, y, width, height], 4 "
        "finite numbers, or a segmentation to take one from (its segmentation: nothing of it "
        f"in the {SIZE}x{SIZE} image)" in out
    )


def test_perfect_predictions_score_map_1_against_the_derived_boxes(root):
    dataset = CocoDataset(root)
    evaluator = TASKS["detection"].evaluator("det", None, dataset, None)
    truth = {a["id"]: a for a in evaluator.ground_truth["annotations"]}
    assert truth[101]["bbox"] == [Q, Q, Q, Q] and truth[103]["bbox"] == [Q, Q, Q, Q]
    assert truth[102]["bbox"] == [6, 4, 14, 8] and truth[102]["area"] == 14 * 8
    assert (evaluator.boxes_from_segmentation, evaluator.left_out) == (3, 0)
    evaluator.reset()
    for i in range(len(dataset)):
        sample = dataset[i]
        prediction = {
            "boxes": torch.from_numpy(sample["boxes"]),
            "scores": torch.ones(len(sample["boxes"])),
            "labels": torch.from_numpy(sample["labels"]),
        }
        evaluator.process({"image_ids": torch.tensor([sample["image_id"]])}, [prediction])
    metrics = evaluator.evaluate()
    assert metrics["det/mAP"] == pytest.approx(1.0)
    (note,) = [line for line in summary_lines(evaluator, "det") if "ground truth" in line]
    assert "3 boxes taken from the segmentation" in note and "left out" not in note
    assert report(metrics, {"det": evaluator})["boxes_from_segmentation"] == {"det": 3}
