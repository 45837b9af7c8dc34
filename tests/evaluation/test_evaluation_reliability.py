"""RELIABILITY.md, table "Evaluation", through ``visionkit eval`` where a user meets it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import run
from visionkit.engine.run_folder import metrics_json
from visionkit.evaluation.coco import CocoEvaluator

pytestmark = pytest.mark.reliability


def with_score_threshold(trained: dict[str, Path], path: Path, threshold: float) -> Path:
    """A copy of the trained checkpoint whose detection head keeps scores above
    ``threshold`` (1.01: it predicts nothing; 0: it predicts every candidate)."""
    ckpt = torch.load(trained["ckpt"], weights_only=True, map_location="cpu")
    ckpt["visionkit"]["config"]["model"]["heads"]["det"]["score_thresh"] = threshold
    torch.save(ckpt, path)
    return path


def edited_gt(trained: dict[str, Path], path: Path, edit) -> Path:
    data = json.loads((trained["data"] / "annotations.json").read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def test_no_predictions_at_all_give_ap_zero(trained, tmp_path, capsys):
    ckpt = with_score_threshold(trained, tmp_path / "silent.ckpt", 1.01)
    code, out, err = run(["eval", "--checkpoint", ckpt], capsys)
    assert code == 0, err[-2000:]
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["det/mAP"] == 0.0 and metrics["det/mAP50"] == 0.0


def test_a_val_set_of_other_category_ids_is_a_clear_error(trained, tmp_path, capsys):
    def renumber(data):  # the val file's categories are not the model's (1, 2)
        for cat in data["categories"]:
            cat["id"] += 10
        for ann in data["annotations"]:
            ann["category_id"] += 10

    ckpt = with_score_threshold(trained, tmp_path / "eager.ckpt", 0.0)
    gt = edited_gt(trained, tmp_path / "other_categories.json", renumber)
    argv = ["eval", "--checkpoint", ckpt, f"data.val.annotations={gt}"]
    code, _, err = run(argv, capsys)
    assert code == 1  # found when the val set is built, before predicting (issue 18 item 4)
    assert f"the classes of data.val do not match those of checkpoint {ckpt}" in err
    assert "category id 11 ('square') of data.val is not a class of checkpoint" in err


@pytest.mark.parametrize("label", [2, -1])
def test_a_prediction_of_a_class_outside_the_evaluated_ones_is_a_clear_error(trained, label):
    """The library's evaluator given a label that is no class index (-1 would index the
    last category) says which image and labels, not an IndexError or a silent wrong class."""
    evaluator = CocoEvaluator("det", trained["data"] / "annotations.json", [1, 2])
    prediction = {
        "boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([label]),
    }
    with pytest.raises(ValueError, match=rf"image 0: predicted labels \[{label}\] are not "
                       r"class indices 0\.\.1 \(the 2 categories evaluated: ids \[1, 2\]\)"):  # fmt: skip
        evaluator.process({"image_ids": torch.tensor([0])}, [prediction])


def test_ground_truth_without_area_or_iscrowd_gets_logged_defaults(trained, tmp_path, capsys):
    def strip(data):
        for ann in data["annotations"]:
            del ann["area"], ann["iscrowd"]

    gt = edited_gt(trained, tmp_path / "bare.json", strip)
    code, out, err = run(
        ["eval", "--checkpoint", trained["ckpt"], f"data.val.annotations={gt}"], capsys
    )
    assert code == 0, err[-2000:]
    assert "4 annotations without 'area'" in err and "4 without 'iscrowd' (filled with 0)" in err
    full = run(["eval", "--checkpoint", trained["ckpt"]], capsys)[1]
    # the filled areas are the polygons' (8 x 8 squares): the same numbers as with the file's
    assert json.loads(out.strip().splitlines()[-1]) == json.loads(full.strip().splitlines()[-1])


def test_ground_truth_with_unusable_areas_is_evaluated_by_visionkit_eval(trained, tmp_path, capsys):
    """Exports write ``"area": null``, ``"area": "64"`` or ``"area": 0`` (Supervisely, CVAT,
    hand-made converters): check-data said "no problems found", and the first validation
    after training died in pycocotools with ``TypeError: '<' not supported between instances
    of 'NoneType' and 'int'``. (What the filled areas score: the test below.)"""

    def unusable(data):
        for ann, area in zip(data["annotations"], [None, "64", 0, float("nan")], strict=False):
            ann["area"] = area

    gt = edited_gt(trained, tmp_path / "areas.json", unusable)
    code, out, err = run(
        ["eval", "--checkpoint", trained["ckpt"], f"data.val.annotations={gt}"], capsys
    )
    assert code == 0, err[-2000:]
    assert "Traceback" not in err
    assert "4 annotations without 'area' or with one that is no number above 0" in err


def sized_ground_truth(path: Path, areas: list) -> Path:
    """One 256x256 image with a small (8 x 8), a medium (40 x 40) and a large (120 x 120)
    square, their ``area`` written as ``areas``."""
    boxes = [[4.0, 4.0, 8.0, 8.0], [20.0, 20.0, 40.0, 40.0], [100.0, 100.0, 120.0, 120.0]]
    annotations = [
        {
            "id": k + 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [x, y, w, h],
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            "area": area,
            "iscrowd": 0,
        }
        for k, ((x, y, w, h), area) in enumerate(zip(boxes, areas, strict=True))
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 256, "height": 256}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "square"}],
    }
    path.write_text(json.dumps(data))
    return path


def perfect_scores(gt: Path) -> dict[str, float]:
    """The metrics of predictions that are the ground-truth boxes."""
    evaluator = CocoEvaluator("det", gt, [1])
    boxes = [a["bbox"] for a in json.loads(gt.read_text())["annotations"]]
    evaluator.process(
        {"image_ids": torch.tensor([1])},
        [
            {
                "boxes": torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes]),
                "scores": torch.tensor([0.9, 0.8, 0.7]),
                "labels": torch.tensor([0, 0, 0]),
            }
        ],
    )
    return evaluator.evaluate()


def test_ground_truth_with_a_null_text_or_zero_area_is_scored_with_its_own(tmp_path):
    """The areas filled for ``null``, ``"1600"`` and ``nan`` are the objects' own: with
    perfect predictions each size range scores 1.0, as with the file's true areas (an area
    filled wrongly, 1.0 say, would put every object in the small range: mAP_medium and
    mAP_large nan)."""
    true = perfect_scores(sized_ground_truth(tmp_path / "true.json", [64.0, 1600.0, 14400.0]))
    for k in ("mAP", "mAP_small", "mAP_medium", "mAP_large"):
        assert true[f"det/{k}"] == pytest.approx(1.0)
    filled = sized_ground_truth(tmp_path / "bad.json", [None, "1600", float("nan")])
    assert perfect_scores(filled) == true
    zero = sized_ground_truth(tmp_path / "zero.json", [0, 0, 0])  # not all small
    assert perfect_scores(zero) == true


def test_ground_truth_with_a_null_iscrowd_is_scored_as_objects(trained, tmp_path, capsys):
    """``"iscrowd": null`` (a converter's NaN written as null): the reader takes the objects,
    and the first validation died in pycocotools with ``TypeError: int() argument must be
    ... not 'NoneType'``."""

    def null(data):
        for ann in data["annotations"]:
            ann["iscrowd"] = None

    gt = edited_gt(trained, tmp_path / "crowds.json", null)
    code, out, err = run(
        ["eval", "--checkpoint", trained["ckpt"], f"data.val.annotations={gt}"], capsys
    )
    assert code == 0, err[-2000:]
    assert "4 without 'iscrowd' (filled with 0)" in err
    full = run(["eval", "--checkpoint", trained["ckpt"]], capsys)[1]
    assert json.loads(out.strip().splitlines()[-1]) == json.loads(full.strip().splitlines()[-1])


def test_a_category_without_ground_truth_is_not_averaged_as_minus_one(trained, tmp_path):
    def ghost(data):
        data["categories"].append({"id": 3, "name": "ghost"})

    gt = edited_gt(trained, tmp_path / "ghost.json", ghost)
    data = json.loads(gt.read_text())
    evaluator = CocoEvaluator("det", gt, [1, 2, 3])
    for ann in data["annotations"]:  # perfect predictions of the two real categories
        x, y, w, h = ann["bbox"]
        evaluator.process(
            {"image_ids": torch.tensor([ann["image_id"]])},
            [
                {
                    "boxes": torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32),
                    "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([ann["category_id"] - 1]),
                }
            ],
        )
    metrics = evaluator.evaluate()
    assert metrics["det/mAP"] == 1.0  # (1 + 1 + -1) / 3 would be 0.33
    assert math.isnan(metrics["det/mAP_large"])  # no large objects: nan, written as null
    assert json.loads(metrics_json(metrics))["det/mAP_large"] is None
    rows = {r["name"]: r for r in evaluator.per_class_ap()}  # the per-class table: nan (null)
    assert rows["square"]["AP"] == 1.0 and math.isnan(rows["ghost"]["AP"])
    assert rows["ghost"]["instances"] == 0


def test_data_without_the_labels_of_any_head_is_an_error_not_a_loss_of_zero(
    trained, tmp_path, capsys
):
    """A detector's checkpoint given class folders: nothing can be scored. It printed
    ``{"val/loss": 0.0}`` and exited 0, which a script reads as an evaluation."""
    from tests.helpers import write_image

    for name in ("cat", "dog"):
        for i in range(2):
            write_image(tmp_path / "pets" / "val" / name / f"{i}.png", seed=i)
    entry = f"data.val={{format: folder, root: {tmp_path / 'pets' / 'val'}}}"
    code, out, err = run(["eval", "--checkpoint", trained["ckpt"], entry], capsys)
    assert code == 2 and "val/loss" not in out  # a configuration error, as --conf on a classifier
    assert "data.val: nothing to score: the checkpoint's heads want det (instances labels)" in err
    assert "the data holds class labels" in err
