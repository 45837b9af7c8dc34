"""The COCO evaluator equals pycocotools run by hand, and survives degenerate inputs."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.errors import DataError
from visionkit.evaluation.coco import SUMMARY_KEYS, CocoEvaluator


def noisy_predictions(gt_path, category_ids, seed=0):
    """Per image, the ground-truth boxes jittered, with random scores, some labels wrong, and
    some false positives — as xyxy tensors with contiguous labels."""
    rng = np.random.default_rng(seed)
    data = json.loads(gt_path.read_text())
    cat_to_label = {c: i for i, c in enumerate(category_ids)}
    per_image = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        per_image[ann["image_id"]].append(ann)
    out = {}
    for image_id, anns in per_image.items():
        boxes, labels = [], []
        for ann in anns:
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
            boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
            label = cat_to_label[ann["category_id"]]
            labels.append(label if rng.random() > 0.15 else (label + 1) % len(category_ids))
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 40, 2)
            boxes.append([x, y, x + rng.uniform(4, 20), y + rng.uniform(4, 20)])
            labels.append(int(rng.integers(0, len(category_ids))))
        out[image_id] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(rng.uniform(0.05, 1, len(boxes)), dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.long),
        }
    return out


def run_evaluator(evaluator, predictions, batch_size=5):
    evaluator.reset()
    ids = list(predictions)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        evaluator.process({"image_ids": torch.tensor(chunk)}, [predictions[i] for i in chunk])
    return evaluator.evaluate()


def test_metrics_equal_pycocotools_on_the_saved_results(shapes_root, tmp_path):
    gt_path = shapes_root / "val" / "annotations.json"
    evaluator = CocoEvaluator("det", gt_path, [1, 2, 3])
    metrics = run_evaluator(evaluator, noisy_predictions(gt_path, [1, 2, 3]))
    assert set(metrics) == {f"det/{k}" for k in SUMMARY_KEYS}
    assert 0.05 < metrics["det/mAP"] < 0.95

    results_path = tmp_path / "preds.json"
    results_path.write_text(json.dumps(evaluator.results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(str(results_path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for key, value in zip(SUMMARY_KEYS, ev.stats, strict=True):
        ours = metrics[f"det/{key}"]
        if value < 0:
            assert math.isnan(ours)
        else:
            assert abs(ours - value) <= 1e-9, key


def test_perfect_predictions_score_one(shapes_root):
    gt_path = shapes_root / "val" / "annotations.json"
    data = json.loads(gt_path.read_text())
    preds = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        preds[ann["image_id"]].append(ann)
    predictions = {
        i: {
            "boxes": torch.tensor(
                [
                    [
                        a["bbox"][0],
                        a["bbox"][1],
                        a["bbox"][0] + a["bbox"][2],
                        a["bbox"][1] + a["bbox"][3],
                    ]
                    for a in anns
                ]
            ).reshape(-1, 4),
            "scores": torch.ones(len(anns)),
            "labels": torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.long),
        }
        for i, anns in preds.items()
    }
    metrics = run_evaluator(CocoEvaluator("det", gt_path, [1, 2, 3]), predictions)
    assert metrics["det/mAP"] == pytest.approx(1.0)
    assert metrics["det/AR100"] == pytest.approx(1.0)


def test_no_predictions_gives_zero_not_a_crash(shapes_root):
    gt_path = shapes_root / "val" / "annotations.json"
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.long),
    }
    metrics = run_evaluator(CocoEvaluator("det", gt_path, [1, 2, 3]), {1: empty, 2: empty})
    assert metrics["det/mAP"] == 0.0 and metrics["det/AR100"] == 0.0


def test_prediction_for_an_unknown_category_is_a_clear_error(shapes_root):
    gt_path = shapes_root / "val" / "annotations.json"
    bad = {
        "boxes": torch.tensor([[0.0, 0, 5, 5]]),
        "scores": torch.ones(1),
        "labels": torch.tensor([0]),
    }
    with pytest.raises(DataError, match="category_id 99"):
        run_evaluator(CocoEvaluator("det", gt_path, [99]), {1: bad})
