"""The detection confusion matrix and precision-recall curves of ``visionkit eval``
(visionkit/evaluation/plots.py), on hand-made boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visionkit.evaluation.coco import coco_evaluate, load_coco_gt
from visionkit.evaluation.plots import (
    coco_confusion,
    match_detections,
    plot_detection_confusion,
    plot_pr_curve,
    pr_curves,
    pyplot,
    save_figure,
)

# Classes 0 ("cat") and 1 ("dog"); background is index 2.
GT_BOXES = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
GT_LABELS = [0, 1, 0]


def test_one_image_gives_the_hand_counted_matrix():
    boxes = [
        [0, 0, 10, 10],  # cat on the first cat: a true positive
        [21, 21, 30, 30],  # cat on the dog (IoU 0.81): a class confusion
        [60, 60, 70, 70],  # dog on nothing: a false positive (background column)
        [40, 40, 50, 50],  # cat on the second cat, scored under conf: left out
        [1, 1, 11, 11],  # a second cat on the first cat (IoU 0.68): matched already, FP
        [40, 40, 44, 44],  # cat on the second cat at IoU 0.16 < 0.5: FP
    ]
    labels = [0, 0, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.1, 0.6, 0.5]
    matrix = match_detections(GT_BOXES, GT_LABELS, boxes, labels, scores, 2)
    # rows predicted (cat, dog, background), columns true (cat, dog, background)
    expected = np.array(
        [
            [1, 1, 2],  # cat: 1 TP, 1 on a dog, 2 on nothing matched
            [0, 0, 1],  # dog: 1 on nothing
            [1, 0, 0],  # background: the second cat was missed
        ]
    )
    np.testing.assert_array_equal(matrix, expected)
    assert matrix[:, :2].sum() == len(GT_LABELS)  # every true object is counted once
    lower = match_detections(GT_BOXES, GT_LABELS, boxes, labels, scores, 2, conf=0.05)
    assert lower[0, 0] == 2 and lower[2, 0] == 0  # the low-scoring cat now finds it


def test_the_highest_iou_wins_a_contested_object():
    # two detections on one object: the better-overlapping one is matched, whatever its score
    matrix = match_detections(
        [[0, 0, 10, 10]], [0], [[0, 0, 10, 12], [0, 0, 10, 10]], [1, 0], [0.9, 0.5], 2
    )
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 0, 1], [0, 0, 0]])


def test_empty_images_and_bad_labels():
    assert match_detections([], [], [], [], [], 2).sum() == 0
    np.testing.assert_array_equal(
        match_detections([], [], [[0, 0, 5, 5]], [1], [0.9], 2)[1], [0, 0, 1]
    )
    np.testing.assert_array_equal(
        match_detections(GT_BOXES, GT_LABELS, [], [], [], 2)[2], [2, 1, 0]
    )
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.1, got \[2\]"):
        match_detections([], [], [[0, 0, 5, 5]], [2], [0.9], 2)


def ground_truth():
    images = [{"id": i, "width": 64, "height": 64, "file_name": f"{i}.png"} for i in (1, 2)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [20, 20, 10, 10], "area": 100},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 20, 20], "area": 400},
        {
            "id": 4,
            "image_id": 2,
            "category_id": 7,
            "bbox": [30, 30, 9, 9],
            "area": 81,
            "iscrowd": 1,
        },
    ]
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    return load_coco_gt(
        "hand-made", {"images": images, "annotations": anns, "categories": categories}
    )


def result(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def test_coco_results_are_matched_per_image_with_file_category_ids():
    results = [
        result(1, 3, [0, 0, 10, 10], 0.9),  # TP cat
        result(1, 3, [20, 20, 10, 10], 0.8),  # cat on the dog
        result(2, 7, [0, 0, 20, 20], 0.7),  # dog on the cat
        result(2, 7, [30, 30, 9, 9], 0.9),  # on the crowd region: crowds are left out, so FP
        result(2, 5, [50, 50, 5, 5], 0.9),  # a category the ground truth lacks: left out
    ]
    matrix = coco_confusion(ground_truth(), results, [1, 2], [3, 7])
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [1, 0, 1], [0, 0, 0]])


def test_pr_curves_read_coco_precision_at_iou_050(tmp_path):
    gt = ground_truth()
    results = [result(1, 3, [0, 0, 10, 10], 0.9), result(2, 3, [0, 0, 20, 20], 0.8)]
    details = {}
    metrics = coco_evaluate(gt, results, [1, 2], details=details)
    recall, curves, ap50 = pr_curves(details)
    assert recall.shape == (101,) and curves.shape == (2, 101)
    assert ap50[0] == pytest.approx(1.0)  # both cats found, nothing else predicted
    assert ap50[1] == pytest.approx(0.0) and (curves[1] == 0).all()  # the dog: never found
    assert np.nanmean(ap50) == pytest.approx(metrics["mAP50"])
    plot_pr_curve(recall, curves, ap50, ["cat", "dog"], tmp_path / "pr.png")
    plot_detection_confusion(np.eye(3, dtype=int), ["cat", "dog"], tmp_path / "cm.png", True)
    assert (tmp_path / "pr.png").stat().st_size > 0 and (tmp_path / "cm.png").stat().st_size > 0


def test_an_instance_evaluator_gets_box_and_mask_curves_and_one_confusion_matrix(tmp_path):
    import json

    import torch

    from visionkit.evaluation.coco import CocoEvaluator
    from visionkit.evaluation.plots import write_eval_plots

    gt = ground_truth().dataset
    path = tmp_path / "annotations.json"
    anns = [dict(a) for a in gt["annotations"]]
    for a in anns:  # a polygon: the box
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    path.write_text(json.dumps({**gt, "annotations": anns}))
    evaluator = CocoEvaluator("inst", path, [3, 7], iou_types=("bbox", "segm"))
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, :10, :10] = True
    cat = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([0]),
        "masks": masks,
    }
    nothing = {k: v[:0] for k, v in cat.items()}
    evaluator.process({"image_ids": torch.tensor([1, 2])}, [cat, nothing])
    metrics = evaluator.evaluate()
    # one of the two cats found, no dog: AP50 (51 / 101 + 0) / 2, for boxes and masks alike
    assert metrics["inst/mAP50"] == metrics["inst/mask_mAP50"] == pytest.approx(51 / 202)
    assert len(evaluator.summary("bbox")) == len(evaluator.summary("segm")) == 12
    written = write_eval_plots(evaluator, "inst", tmp_path / "eval")
    assert [p.name for p in written] == [
        "pr_curve_inst.png",
        "f1_curve_inst.png",
        "pr_curve_inst_mask.png",
        "f1_curve_inst_mask.png",
        "confusion_matrix_inst.png",
        "confusion_matrix_inst_normalized.png",
    ]
    assert all(p.stat().st_size > 0 for p in written)


def test_the_matrix_threshold_is_at_least_025_unless_asked():
    from visionkit.evaluation.plots import CONFUSION_CONF, confusion_conf

    assert confusion_conf() == confusion_conf(0.001) == confusion_conf(0.05) == CONFUSION_CONF
    assert confusion_conf(0.6) == 0.6  # a higher --conf is kept
    assert confusion_conf(0.001, matrix_conf=0.01) == 0.01  # asked for: used as given


def test_detection_confusion_gives_the_matrix_with_its_class_order():
    from visionkit.evaluation.coco import CocoEvaluator
    from visionkit.evaluation.plots import detection_confusion

    evaluator = CocoEvaluator("det", "hand-made", [3, 7], ground_truth=ground_truth().dataset)
    assert detection_confusion(evaluator) is None  # not scored yet
    results = [result(1, 3, [0, 0, 10, 10], 0.9), result(2, 7, [0, 0, 20, 20], 0.2)]
    evaluator.results = results
    evaluator.details = {"bbox": {"cat_ids": [3, 7], "image_ids": [1, 2]}}
    at_025 = detection_confusion(evaluator)
    assert at_025["classes"] == ["cat", "dog", "background"]
    assert at_025["category_ids"] == [3, 7] and (at_025["conf"], at_025["iou"]) == (0.25, 0.5)
    # the 0.2 dog on the second cat is left out at 0.25: that cat is missed
    assert at_025["matrix"] == [[1, 0, 0], [0, 0, 0], [1, 1, 0]]
    assert detection_confusion(evaluator, 0.1)["matrix"] == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]


@pytest.mark.reliability
def test_a_figure_that_fails_to_save_leaves_the_previous_png_and_is_closed(tmp_path):
    plt = pyplot()
    path = tmp_path / "plots" / "curve.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, path)
    before = path.read_bytes()
    assert before.startswith(b"\x89PNG") and not plt.fignum_exists(fig.number)

    def half_written(tmp, **kwargs):
        Path(tmp).write_bytes(b"half")
        raise ZeroDivisionError

    fig = plt.figure()
    fig.savefig = half_written
    with pytest.raises(ZeroDivisionError):
        save_figure(fig, path)
    assert path.read_bytes() == before  # the earlier picture, whole
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]  # no temporary file
    assert not plt.fignum_exists(fig.number)
