"""Segmentation end to end on tiny shapes data: a semantic head and an instance head train on
one backbone; mIoU and COCO ``segm`` metrics are reported; eval's saved results equal
pycocotools by hand; the reloaded model predicts masks; ``predict`` writes label PNGs and RLE."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import visionkit
from visionkit.data.io import read_image
from visionkit.engine.runner import evaluate, train
from visionkit.evaluation.coco import SUMMARY_KEYS
from visionkit.inference.predict import predict_files


def coco_stats(gt_path, results_path, iou_type):
    results = json.loads(results_path.read_text())
    if iou_type == "segm":  # as detectron2 does: mask areas from the masks, not the boxes
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_semantic_and_instance_heads_train_evaluate_and_predict(
    shapes_root, tmp_path, pyramid_config
):
    heads = {
        "seg": {"name": "semantic_fpn", "channels": 32},
        "inst": {"name": "fcos_mask", "num_convs": 1},
    }
    run_dir, metrics = train(pyramid_config("seg", heads))
    names = ["background", "circle", "square", "triangle"]
    assert {"seg/mIoU", "seg/pixel_acc"} | {f"seg/IoU_{n}" for n in names} <= set(metrics)
    assert {"inst/mAP", "inst/mask_mAP", "inst/mask_mAP50"} <= set(metrics)
    assert 0.0 <= metrics["seg/mIoU"] <= 1.0 and metrics["seg/pixel_acc"] > 0.5
    # the run folder's per-class tables: IoU of the semantic head, AP of the instance head
    with open(run_dir / "per_class_iou_seg.csv", newline="") as f:
        ious = list(csv.DictReader(f))
    assert [r["name"] for r in ious] == [*names, "mean"]
    for r in ious[:-1]:
        assert float(r["IoU"]) == pytest.approx(metrics[f"seg/IoU_{r['name']}"], abs=1e-6)
    assert float(ious[-1]["IoU"]) == pytest.approx(metrics["seg/mIoU"], abs=1e-6)
    assert "Per-class IoU of `seg`" in (run_dir / "per_class_iou_seg.md").read_text()
    assert (run_dir / "per_class_ap_inst.csv").is_file()
    assert (run_dir / "plots" / "confusion_seg.png").stat().st_size > 0  # pixels, rows normalised
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    for key in ("train/loss_epoch", "train/seg/loss_epoch", "train/inst/mask_epoch"):
        losses = [float(r[key]) for r in rows]
        assert losses[-1] < losses[0], (key, losses)

    preds_path = tmp_path / "preds.json"
    again = evaluate(run_dir / "checkpoints" / "best.ckpt", save_predictions=preds_path)
    assert abs(again["seg/mIoU"] - metrics["seg/mIoU"]) < 1e-9
    results = json.loads(preds_path.read_text())
    assert results and {"segmentation", "bbox", "score"} <= set(results[0])
    gt_path = shapes_root / "val" / "annotations.json"
    for iou_type, prefix in (("bbox", ""), ("segm", "mask_")):
        stats = coco_stats(gt_path, preds_path, iou_type)
        for key, value in zip(SUMMARY_KEYS, stats, strict=True):
            ours = again[f"inst/{prefix}{key}"]
            assert (math.isnan(ours) and value < 0) or abs(ours - value) <= 1e-9, (iou_type, key)

    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    image = read_image(shapes_root / "val" / "images" / "000001.png")
    (pred,) = model.predict([image])
    assert pred["seg"]["mask"].shape == (64, 64) and int(pred["seg"]["mask"].max()) < 4
    inst = pred["inst"]
    assert inst["masks"].shape == (len(inst["boxes"]), 64, 64)

    out = predict_files(model, [shapes_root / "val" / "images" / "000001.png"], tmp_path / "p")
    label_png = np.asarray(Image.open(tmp_path / "p" / "000001.png_seg.png"))
    assert (label_png == pred["seg"]["mask"].numpy()).all()
    records = json.loads((tmp_path / "p" / "images.json").read_text())
    assert records[0]["seg"]["label_png"] == "000001.png_seg.png"
    assert records[0]["seg"]["names"] == pred["seg"]["names"]
    assert abs(sum(records[0]["seg"]["pixels"].values()) - 1) < 1e-3
    entries = json.loads(out.read_text())
    assert all("segmentation" in e and e["head"] == "inst" for e in entries)
    assert (tmp_path / "p" / "000001.png_pred.png").is_file()
