"""OKS mAP of the keypoint evaluator equals pycocotools run by hand on the same json and
results (to 1e-9), with the head's sigmas."""

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

from visionkit.data.readers.coco import CocoDataset
from visionkit.data.synthetic import make_shapes
from visionkit.errors import DataError
from visionkit.evaluation.keypoints import KEYPOINT_KEYS, KeypointEvaluator, keypoint_evaluator
from visionkit.models.heads.keypoints import FCOSKeypointsHead

SIGMAS = [0.05, 0.08, 0.08, 0.08, 0.08]


def _predictions(data, rng):
    """Noisy copies of the ground truth (a few dropped, one false positive per image)."""
    per_image = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = ann["bbox"]
        kp = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, 1.5, (len(kp), 2))
        kp[:, 2] = rng.random(len(kp))
        per_image[ann["image_id"]].append(([x, y, x + w, y + h], rng.random(), ann, kp))
    batches = []
    for image_id, items in per_image.items():
        boxes = [b for b, *_ in items] + [[1.0, 1.0, 20.0, 20.0]]
        scores = [s for _, s, *_ in items] + [0.3]
        labels = [a["category_id"] - 1 for _, _, a, _ in items] + [0]
        points = [k for *_, k in items] + [rng.uniform(1, 20, (5, 3))]
        prediction = {
            "boxes": torch.tensor(boxes),
            "scores": torch.tensor(scores),
            "labels": torch.tensor(labels),
            "keypoints": torch.tensor(np.stack(points), dtype=torch.float32),
        }
        batches.append(({"image_ids": torch.tensor([image_id])}, [prediction]))
    return batches


def test_oks_map_equals_pycocotools_by_hand(tmp_path):
    path = make_shapes(
        tmp_path / "kp", num_images=12, size=96, seed=2, max_shapes=5, keypoints=True
    )
    data = json.loads(path.read_text())
    # as training builds it: from the dataset, scoring the ground truth the reader kept
    head = FCOSKeypointsHead([16], [8], num_classes=3, num_keypoints=5, kpt_oks_sigmas=SIGMAS)
    evaluator = keypoint_evaluator("pose", head, CocoDataset(path.parent, keypoints=True), None)
    assert evaluator.ground_truth is not None
    evaluator.reset()
    for batch, predictions in _predictions(data, np.random.default_rng(0)):
        evaluator.process(batch, predictions)
    metrics = evaluator.evaluate()

    results = tmp_path / "results.json"
    results.write_text(json.dumps(evaluator.keypoint_results))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(str(results)), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.array(SIGMAS)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for key, value in zip(KEYPOINT_KEYS, ev.stats, strict=True):
        ours = metrics[f"pose/kpt_{key}"]
        assert (math.isnan(ours) and value < 0) or abs(ours - value) <= 1e-9, key
    assert 0.2 < metrics["pose/kpt_mAP"] < 1.0  # a real score, neither empty nor perfect
    assert "pose/mAP" in metrics  # the boxes are scored too


def test_a_ground_truth_without_keypoint_categories_is_an_error(tmp_path):
    path = make_shapes(tmp_path / "kp", num_images=2, size=64, seed=0, keypoints=True)
    data = json.loads(path.read_text())
    data["categories"] = [{"id": c["id"], "name": c["name"]} for c in data["categories"]]
    evaluator = KeypointEvaluator("pose", path, [1, 2, 3], SIGMAS, ground_truth=data)
    batch, predictions = _predictions(data | {"annotations": []}, np.random.default_rng(0))[0]
    evaluator.process(batch, predictions)
    with pytest.raises(DataError, match="no category of the ground truth has a 'keypoints'"):
        evaluator.evaluate()


def test_factory_checks_the_number_of_keypoints(tmp_path):
    make_shapes(tmp_path / "kp", num_images=2, size=64, seed=0, keypoints=True)
    dataset = CocoDataset(tmp_path / "kp", keypoints=True)
    head = FCOSKeypointsHead([16], [8], num_classes=3, num_keypoints=5)
    assert keypoint_evaluator("pose", head, dataset, None).sigmas == head.kpt_oks_sigmas
    wrong = FCOSKeypointsHead([16], [8], num_classes=3, num_keypoints=17)
    with pytest.raises(Exception, match="num_keypoints: 17, but .* defines 5 keypoints"):
        keypoint_evaluator("pose", wrong, dataset, None)
