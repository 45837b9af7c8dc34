"""The COCO evaluator (boxes and masks) equals pycocotools run by hand, and survives degenerate
inputs."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.errors import DataError
from visionkit.evaluation.coco import (
    F1_KEYS,
    SUMMARY_KEYS,
    CocoEvaluator,
    encode_masks,
    to_coco_results,
)


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
    assert set(metrics) == {f"det/{k}" for k in (*SUMMARY_KEYS, *F1_KEYS.values())}
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


def test_predictions_of_a_category_the_ground_truth_lacks_are_left_out(shapes_root, caplog):
    # A model's class that a (subset) validation set does not hold: COCOeval scores the ground
    # truth's categories only, so the prediction counts nowhere and is left out. (A category
    # that is not the model's at all is refused when the datasets are built: see
    # tests/evaluation/test_evaluation_reliability.py and tests/data/test_class_lists.py.)
    gt_path = shapes_root / "val" / "annotations.json"
    other = {
        "boxes": torch.tensor([[0.0, 0, 5, 5]]),
        "scores": torch.ones(1),
        "labels": torch.tensor([0]),
    }
    with caplog.at_level(logging.DEBUG, logger="visionkit.evaluation.coco"):
        metrics = run_evaluator(CocoEvaluator("det", gt_path, [99]), {1: other})
    assert metrics["det/mAP"] == 0.0
    assert "1 predictions of categories not in the ground truth left out (categories [99])" in (
        caplog.text
    )


# ---- masks (segm) ----------------------------------------------------------------------------
SIZES = {1: (40, 60), 2: (50, 50), 3: (64, 48)}  # image id -> (H, W)


def ellipse(size, cx, cy, rx, ry):
    ys, xs = np.mgrid[: size[0], : size[1]] + 0.5
    return (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).astype(np.uint8)


def make_mask_gt(tmp_path):
    """A COCO json with RLE (ellipses, a rectangle) and polygon (triangles, a quad) masks, small
    and medium objects, on three images of different sizes."""
    rle_masks = {
        1: [(ellipse(SIZES[1], 15, 20, 10, 14), 1), (ellipse(SIZES[1], 45, 12, 9, 6), 2)],
        2: [(ellipse(SIZES[2], 25, 25, 22, 20), 2)],
        3: [(np.pad(np.ones((20, 12), np.uint8), ((40, 4), (30, 6))), 1)],
    }
    polygons = {
        1: [([40.0, 38.0, 58.0, 38.0, 49.0, 22.0], 1)],
        2: [([2.0, 2.0, 14.0, 3.0, 8.0, 12.0], 1)],
        3: [
            ([4.0, 4.0, 40.0, 6.0, 38.0, 34.0, 6.0, 30.0], 2),
            ([10.0, 50.0, 22.0, 50.0, 16.0, 60.0], 2),
        ],
    }
    annotations = []
    for image_id, (h, w) in SIZES.items():
        rles = [(mask_utils.encode(np.asfortranarray(m)), c) for m, c in rle_masks[image_id]] + [
            (mask_utils.frPyObjects([p], h, w)[0], c) for p, c in polygons[image_id]
        ]
        segms = [
            {"size": [h, w], "counts": r["counts"].decode()}
            for r, _ in rles[: len(rle_masks[image_id])]
        ] + [[p] for p, _ in polygons[image_id]]
        for (rle, category), segm in zip(rles, segms, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [float(x) for x in mask_utils.toBbox(rle)],
                    "area": float(mask_utils.area(rle)),
                    "segmentation": segm,
                    "iscrowd": 0,
                }
            )
    data = {
        "images": [
            {"id": i, "height": h, "width": w, "file_name": f"{i}.png"}
            for i, (h, w) in SIZES.items()
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": annotations,
    }
    path = tmp_path / "gt_masks.json"
    path.write_text(json.dumps(data))
    assert any(isinstance(a["segmentation"], list) for a in annotations)
    assert any(isinstance(a["segmentation"], dict) for a in annotations)
    assert {a["area"] < 32**2 for a in annotations} == {True, False}  # small and medium
    return path


def gt_instance_masks(gt_path):
    """Per image id: the ground-truth masks ``[N, H, W]`` bool and their contiguous labels."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
    out = {}
    for image_id in sorted(coco.getImgIds()):
        h, w = coco.imgs[image_id]["height"], coco.imgs[image_id]["width"]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w))
        out[image_id] = (masks.astype(bool), [a["category_id"] - 1 for a in anns])
    return out


def mask_prediction(masks, labels, scores):
    """A head's prediction dict from bool masks ``[N, H, W]``, boxes tight around them."""
    masks = torch.as_tensor(masks, dtype=torch.bool)
    boxes = torch.zeros(len(masks), 4)
    for i, m in enumerate(masks):
        ys, xs = torch.nonzero(m, as_tuple=True)
        if len(xs):
            boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    return {
        "boxes": boxes,
        "scores": torch.as_tensor(scores, dtype=torch.float32),
        "labels": torch.as_tensor(labels, dtype=torch.long),
        "masks": masks,
    }


def noisy_mask_predictions(gt_path, seed=0):
    """Ground-truth masks shifted by up to 1 pixel, some with the wrong label, random scores,
    and false-positive ellipses — one of them small by its mask (< 32²) but not by its box."""
    rng = np.random.default_rng(seed)
    out = {}
    for image_id, (masks, labels) in gt_instance_masks(gt_path).items():
        h, w = SIZES[image_id]
        pred_masks, pred_labels = [], []
        for mask, label in zip(masks, labels, strict=True):
            dy, dx = rng.integers(-1, 2, 2)
            pred_masks.append(np.roll(mask, (dy, dx), axis=(0, 1)))
            pred_labels.append(label if rng.random() > 0.1 else 1 - label)
        for _ in range(2):
            cx, cy = rng.uniform(5, w - 5), rng.uniform(5, h - 5)
            pred_masks.append(ellipse((h, w), cx, cy, *rng.uniform(3, 12, 2)).astype(bool))
            pred_labels.append(int(rng.integers(0, 2)))
        scores = list(rng.uniform(0.05, 1, len(pred_masks)))
        if image_id == 3:
            pred_masks.append(ellipse((h, w), 24, 32, 20, 16).astype(bool))  # box 40 × 32
            pred_labels.append(0)
            scores.append(0.99)
        out[image_id] = mask_prediction(np.stack(pred_masks), pred_labels, scores)
    return out


def by_hand(gt_path, results, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def assert_stats_equal(metrics, prefix, stats, keys=SUMMARY_KEYS):
    for key, value in zip(SUMMARY_KEYS, stats, strict=True):
        if key not in keys:
            continue
        ours = metrics[f"{prefix}{key}"]
        if value < 0:
            assert math.isnan(ours), key
        else:
            assert abs(ours - value) <= 1e-9, (key, ours, value)


def test_segm_metrics_equal_pycocotools_on_the_saved_results(tmp_path):
    gt_path = make_mask_gt(tmp_path)
    evaluator = CocoEvaluator("inst", gt_path, [1, 2], iou_types=("bbox", "segm"))
    metrics = run_evaluator(evaluator, noisy_mask_predictions(gt_path), batch_size=2)
    assert set(metrics) == {f"inst/{k}" for k in (*SUMMARY_KEYS, *F1_KEYS.values())} | {
        f"inst/mask_{k}" for k in SUMMARY_KEYS
    }
    assert 0.05 < metrics["inst/mask_mAP"] < 0.95
    assert metrics["inst/mask_mAP"] != metrics["inst/mAP"]

    results_path = tmp_path / "preds.json"
    results_path.write_text(json.dumps(evaluator.results))  # JSON-serialisable as it is
    saved = json.loads(results_path.read_text())
    assert all("segmentation" in r and "bbox" in r for r in saved)
    assert_stats_equal(metrics, "inst/", by_hand(gt_path, saved, "bbox"))
    # The COCO segm result format carries no bbox (loadRes would take the box's area).
    segm_only = [{k: v for k, v in r.items() if k != "bbox"} for r in saved]
    assert_stats_equal(metrics, "inst/mask_", by_hand(gt_path, segm_only, "segm"))
    # With the boxes left in, loadRes takes box areas: only the area-range numbers differ.
    with_boxes = by_hand(gt_path, saved, "segm")
    same = ("mAP", "mAP50", "mAP75", "AR1", "AR10", "AR100")
    assert_stats_equal(metrics, "inst/mask_", with_boxes, keys=same)
    assert with_boxes[SUMMARY_KEYS.index("mAP_small")] != metrics["inst/mask_mAP_small"]


def test_segm_only_and_unknown_iou_type(tmp_path):
    gt_path = make_mask_gt(tmp_path)
    evaluator = CocoEvaluator("inst", gt_path, [1, 2], iou_types=("segm",))
    metrics = run_evaluator(evaluator, noisy_mask_predictions(gt_path))
    # P, R and F1 of the masks, the head's first (only) type
    assert set(metrics) == {f"inst/mask_{k}" for k in SUMMARY_KEYS} | {
        f"inst/{k}" for k in F1_KEYS.values()
    }
    with pytest.raises(ValueError, match="iou_types"):
        CocoEvaluator("inst", gt_path, [1, 2], iou_types=("keypoints",))


def test_mask_rle_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((4, 37, 53)) > 0.6
    masks[1] = False  # an empty mask
    masks[2] = True
    results = json.loads(
        json.dumps(to_coco_results(7, mask_prediction(masks, [0] * 4, [1] * 4), [1], masks=True))
    )
    decoded = mask_utils.decode([r["segmentation"] for r in results])  # [H, W, N]
    assert decoded.shape == (37, 53, 4)
    assert np.array_equal(decoded.transpose(2, 0, 1).astype(bool), masks)
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    assert encode_masks(torch.zeros(0, 5, 6, dtype=torch.bool)) == []


@pytest.mark.parametrize("data", ["hand_made", "shapes"])
def test_perfect_masks_score_one(data, tmp_path, shapes_root):
    gt_path = (
        make_mask_gt(tmp_path) if data == "hand_made" else shapes_root / "val" / "annotations.json"
    )
    predictions = {
        image_id: mask_prediction(masks, labels, [1.0] * len(labels))
        for image_id, (masks, labels) in gt_instance_masks(gt_path).items()
    }
    ids = [c["id"] for c in json.loads(gt_path.read_text())["categories"]]
    evaluator = CocoEvaluator("inst", gt_path, ids, iou_types=("bbox", "segm"))
    metrics = run_evaluator(evaluator, predictions)
    assert metrics["inst/mask_mAP"] == pytest.approx(1.0)
    assert metrics["inst/mask_AR100"] == pytest.approx(1.0)
    assert metrics["inst/mAP"] == pytest.approx(1.0)


def test_no_mask_predictions_gives_zeros(tmp_path):
    gt_path = make_mask_gt(tmp_path)
    predictions = {
        i: mask_prediction(np.zeros((0, h, w), bool), [], []) for i, (h, w) in SIZES.items()
    }
    metrics = run_evaluator(CocoEvaluator("inst", gt_path, [1, 2], ("bbox", "segm")), predictions)
    assert len(metrics) == 24 + 4  # and P, R, F1 0, no F1 threshold
    assert metrics["inst/mask_mAP"] == 0.0 and metrics["inst/mask_AR100"] == 0.0
    assert metrics["inst/mAP"] == 0.0 and metrics["inst/F1"] == 0.0
    assert math.isnan(metrics["inst/F1_conf"])


def test_mask_predictions_must_have_masks_of_the_image_size(tmp_path):
    gt_path = make_mask_gt(tmp_path)
    evaluator = CocoEvaluator("inst", gt_path, [1, 2], ("bbox", "segm"))
    boxes_only = {
        "boxes": torch.tensor([[0.0, 0, 5, 5]]),
        "scores": torch.ones(1),
        "labels": torch.tensor([0]),
    }
    with pytest.raises(ValueError, match="masks"):
        run_evaluator(evaluator, {1: boxes_only})
    wrong_size = mask_prediction(np.ones((1, 20, 20), bool), [0], [1.0])
    with pytest.raises(DataError, match=r"image_id 1: mask size \[20, 20\], image size \[40, 60\]"):
        run_evaluator(evaluator, {1: wrong_size})


def test_save_predictions_of_a_model_without_a_coco_head_is_an_option_error(tmp_path):
    """``eval --save-predictions`` of a classifier: the option is at fault, headed so."""
    from visionkit.errors import ConfigError
    from visionkit.evaluation.coco import save_results

    with pytest.raises(ConfigError) as raised:
        save_results({"cls": object()}, tmp_path / "p.json")
    first = str(raised.value).splitlines()[0]
    assert first.startswith("invalid command-line option"), first
    assert "--save-predictions" in str(raised.value)
    assert not (tmp_path / "p.json").exists()
