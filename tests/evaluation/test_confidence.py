"""The best-F1 score threshold (visionkit.evaluation.confidence): precision, recall and F1 at
IoU 0.50 per score threshold, read from COCOeval's matches, against a matching done here by
hand; and the evaluator's ``<head>/P``, ``/R``, ``/F1``, ``/F1_conf``."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.evaluation.coco import CocoEvaluator
from visionkit.evaluation.confidence import CONF_GRID, best_conf, f1_curve


def write_gt(tmp_path, images, categories=(1, 2)):
    """``images``: per image, a list of ``(category_id, [x, y, w, h])`` (iscrowd when a
    third item is True)."""
    data = {
        "images": [{"id": i + 1, "width": 100, "height": 100} for i in range(len(images))],
        "categories": [{"id": c, "name": f"c{c}"} for c in categories],
        "annotations": [
            {
                "id": len(images) * 100 + k * 10 + j,
                "image_id": k + 1,
                "category_id": ann[0],
                "bbox": ann[1],
                "area": ann[1][2] * ann[1][3],
                "iscrowd": int(len(ann) > 2 and ann[2]),
            }
            for k, anns in enumerate(images)
            for j, ann in enumerate(anns)
        ],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path


def evaluated(gt_path, results):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
    return ev


def det(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def iou_xywh(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def by_hand(gt_path, results, conf):
    """Mean precision and recall over the classes with objects, of the detections scoring at
    least ``conf``: per image and class, detections in decreasing score order each take the
    unmatched true box of highest IoU >= 0.5 (no crowds here)."""
    data = json.loads(gt_path.read_text())
    precisions, recalls = [], []
    for cat in sorted({a["category_id"] for a in data["annotations"]}):
        truths = [a for a in data["annotations"] if a["category_id"] == cat]
        kept = matched = 0
        for image in data["images"]:
            boxes = [a["bbox"] for a in truths if a["image_id"] == image["id"]]
            free = [True] * len(boxes)
            dets = [
                r
                for r in results
                if r["image_id"] == image["id"] and r["category_id"] == cat and r["score"] >= conf
            ]
            for r in sorted(dets, key=lambda r: -r["score"]):
                kept += 1
                ious = [iou_xywh(r["bbox"], b) if free[g] else -1 for g, b in enumerate(boxes)]
                if ious and max(ious) >= 0.5:
                    free[int(np.argmax(ious))] = False
                    matched += 1
        precisions.append(matched / kept if kept else 1.0)
        recalls.append(matched / len(truths))
    return float(np.mean(precisions)), float(np.mean(recalls))


def test_precision_and_recall_per_threshold_of_a_small_case(tmp_path):
    # one class, 4 objects in 2 images; detections 0.9 hit, 0.8 miss, 0.7 hit, 0.6 the same
    # object again (a duplicate: a false positive), 0.3 hit, 0.2 miss
    gt_path = write_gt(
        tmp_path,
        [[(1, [0, 0, 20, 20]), (1, [50, 50, 20, 20])], [(1, [0, 0, 30, 30]), (1, [60, 0, 30, 30])]],
        categories=(1,),
    )
    results = [
        det(1, 1, [1, 1, 20, 20], 0.9),
        det(1, 1, [30, 30, 10, 10], 0.8),
        det(2, 1, [0, 0, 30, 28], 0.7),
        det(2, 1, [2, 0, 30, 30], 0.6),
        det(1, 1, [50, 50, 20, 22], 0.3),
        det(2, 1, [80, 80, 10, 10], 0.2),
    ]
    curve = f1_curve(evaluated(gt_path, results))
    at = {round(c, 2): i for i, c in enumerate(curve["conf"])}
    expected = {  # conf: (P, R)
        0.1: (3 / 6, 3 / 4),
        0.25: (3 / 5, 3 / 4),
        0.5: (2 / 4, 2 / 4),
        0.65: (2 / 3, 2 / 4),
        0.75: (1 / 2, 1 / 4),
        0.85: (1.0, 1 / 4),
        0.95: (1.0, 0.0),  # nothing kept: precision 1, recall 0, F1 0
    }
    for conf, (p, r) in expected.items():
        i = at[conf]
        assert curve["P"][i] == pytest.approx(p) and curve["R"][i] == pytest.approx(r), conf
        assert curve["F1"][i] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0), conf
        assert (p, r) == pytest.approx(by_hand(gt_path, results, conf))
    assert curve["conf"][0] == 0.01 and curve["conf"][-1] == 0.99 and len(curve["conf"]) == 99


def test_the_curve_equals_a_matching_by_hand_at_every_threshold(tmp_path):
    rng = np.random.default_rng(0)
    images, results = [], []
    for image_id in range(1, 9):
        anns = []
        for _ in range(rng.integers(1, 5)):
            x, y = rng.uniform(0, 70, 2)
            box = [float(x), float(y), float(rng.uniform(8, 30)), float(rng.uniform(8, 30))]
            cat = int(rng.integers(1, 3))
            anns.append((cat, box))
            for _ in range(rng.integers(0, 3)):  # hits, near misses and duplicates
                jitter = (box[0] + rng.normal(0, 3), box[1] + rng.normal(0, 3), *box[2:])
                score = float(rng.uniform(0.05, 1))
                other = cat if rng.random() > 0.2 else 3 - cat
                results.append(det(image_id, other, [float(v) for v in jitter], score))
        for _ in range(rng.integers(0, 3)):  # boxes on nothing
            x, y = rng.uniform(0, 80, 2)
            score = float(rng.uniform(0.05, 1))
            results.append(
                det(image_id, int(rng.integers(1, 3)), [float(x), float(y), 15, 15], score)
            )
        images.append(anns)
    gt_path = write_gt(tmp_path, images)
    curve = f1_curve(evaluated(gt_path, results))
    for i, conf in enumerate(curve["conf"]):
        p, r = by_hand(gt_path, results, conf)
        assert curve["P"][i] == pytest.approx(p) and curve["R"][i] == pytest.approx(r), conf
    assert curve["F1"].max() > 0.3


def test_crowds_and_classes_without_objects_count_nowhere(tmp_path):
    # class 2 has no objects: its detection is not averaged in; a detection on a crowd region
    # is neither a hit nor a false positive, and the crowd is no object to find
    gt_path = write_gt(tmp_path, [[(1, [0, 0, 20, 20]), (1, [50, 50, 40, 40], True)]])
    results = [
        det(1, 1, [0, 0, 20, 20], 0.9),
        det(1, 1, [55, 55, 20, 20], 0.8),  # inside the crowd
        det(1, 2, [0, 0, 20, 20], 0.95),  # a class without objects
    ]
    curve = f1_curve(evaluated(gt_path, results))
    below = curve["conf"] <= 0.9  # above, nothing is kept
    assert set(curve["P"].tolist()) == {1.0} and set(curve["R"][below].tolist()) == {1.0}
    assert f1_curve(evaluated(write_gt(tmp_path, [[]]), [det(1, 1, [0, 0, 9, 9], 0.5)])) is None
    # a class with objects but no detection at all has precision 0, as Ultralytics' P
    gt_path = write_gt(tmp_path, [[(1, [0, 0, 20, 20]), (2, [50, 50, 20, 20])]])
    curve = f1_curve(evaluated(gt_path, [det(1, 1, [0, 0, 20, 20], 0.9)]))
    assert curve["P"][below].tolist() == [0.5] * int(below.sum())  # (1 + 0) / 2
    assert curve["R"][below].tolist() == [0.5] * int(below.sum())


def test_best_conf_is_the_peak_of_the_smoothed_mean_curve():
    f1 = 0.8 - np.abs(CONF_GRID - 0.43)
    assert best_conf(f1, f1, f1) == {"conf": 0.43, "P": 0.8, "R": 0.8, "F1": 0.8}
    # a lone spike is smoothed away in favour of a broad peak, as Ultralytics' curve is
    spiky = np.where(np.abs(CONF_GRID - 0.6) < 0.1, 0.7, 0.3)
    spiky[CONF_GRID == 0.2] = 0.9
    assert best_conf(spiky, spiky, spiky)["conf"] == 0.6
    # the best F1 over a run of thresholds (every hit above every false positive): its middle
    separated = np.where(CONF_GRID <= 0.8, 1.0, 0.5)
    assert best_conf(separated, separated, separated)["conf"] == 0.38  # 0.01-0.75 smoothed
    flat = np.full(len(CONF_GRID), 0.5)
    assert best_conf(flat, flat, flat)["conf"] == 0.5
    # under the score the detections were kept at the curve is flat for want of detections:
    # not chosen (an evaluation at conf 0.5 of a model whose hits all score above 0.8)
    assert best_conf(separated, separated, separated, floor=0.5)["conf"] == 0.62
    # nothing matched: no threshold
    zero = np.zeros(len(CONF_GRID))
    found = best_conf(zero, zero, zero)
    assert np.isnan(found.pop("conf")) and found == {"P": 0.0, "R": 0.0, "F1": 0.0}


def test_the_evaluator_reports_precision_and_recall_at_its_best_f1(tmp_path):
    gt_path = write_gt(tmp_path, [[(1, [0, 0, 20, 20]), (2, [50, 50, 30, 30])]] * 4)
    evaluator = CocoEvaluator("det", gt_path, [1, 2])
    boxes = torch.tensor([[0, 0, 20, 20], [50, 50, 80, 80], [10, 60, 30, 90]], dtype=torch.float32)
    for image_id in range(1, 5):
        scores = torch.tensor([0.9, 0.6, 0.3 + 0.05 * image_id])  # the third is on nothing
        prediction = {"boxes": boxes, "scores": scores, "labels": torch.tensor([0, 1, 1])}
        evaluator.process({"image_ids": torch.tensor([image_id])}, [prediction])
    metrics = evaluator.evaluate()
    # every object found above 0.5; the false positives score 0.35-0.5
    assert metrics["det/F1"] == 1.0 and metrics["det/P"] == 1.0 and metrics["det/R"] == 1.0
    assert 0.5 <= metrics["det/F1_conf"] <= 0.6
    p, r = by_hand(gt_path, evaluator.results, metrics["det/F1_conf"])
    assert (metrics["det/P"], metrics["det/R"]) == pytest.approx((p, r))
    # boxes on nothing only: F1 0, and no threshold to keep
    evaluator.reset()
    miss = {"boxes": boxes[2:], "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    evaluator.process({"image_ids": torch.tensor([1])}, [miss])
    metrics = evaluator.evaluate()
    assert metrics["det/F1"] == 0.0 and np.isnan(metrics["det/F1_conf"])
    # no detection at all: the same keys (a monitor or a curve of det/F1 finds them)
    evaluator.reset()
    nothing = {"boxes": boxes[:0], "scores": torch.zeros(0), "labels": torch.zeros(0).long()}
    evaluator.process({"image_ids": torch.tensor([1])}, [nothing])
    metrics = evaluator.evaluate()
    assert (metrics["det/P"], metrics["det/R"], metrics["det/F1"]) == (0.0, 0.0, 0.0)
    assert np.isnan(metrics["det/F1_conf"])


def test_no_threshold_is_chosen_under_the_score_the_detections_were_kept_at(tmp_path):
    """A model whose boxes all hit and score 0.7-0.95: every threshold up to 0.7 keeps them
    all. Scored at 0.05, the middle of that run is chosen; scored at --conf 0.6, the middle of
    0.6-0.7 (nothing under 0.6 was seen)."""
    gt_path = write_gt(tmp_path, [[(1, [0, 0, 20, 20]), (2, [50, 50, 30, 30])]] * 4)
    boxes = torch.tensor([[0, 0, 20, 20], [50, 50, 80, 80]], dtype=torch.float32)
    chosen = []
    for floor in (0.05, 0.6):
        evaluator = CocoEvaluator("det", gt_path, [1, 2])
        evaluator.score_floor = floor
        for image_id in range(1, 5):
            scores = torch.tensor([0.95, 0.7 + 0.01 * image_id])
            prediction = {"boxes": boxes, "scores": scores, "labels": torch.tensor([0, 1])}
            evaluator.process({"image_ids": torch.tensor([image_id])}, [prediction])
        metrics = evaluator.evaluate()
        assert metrics["det/F1"] == 1.0
        chosen.append(metrics["det/F1_conf"])
    assert chosen[0] < 0.5 and 0.6 <= chosen[1] < 0.7
