"""Detection end to end: simple_cnn → FPN → FCOS on tiny shapes data; COCO metrics from the
evaluator equal pycocotools on the saved predictions; reload and predict boxes."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import visionkit
from visionkit.data.io import read_image
from visionkit.engine.runner import evaluate, train
from visionkit.evaluation.coco import SUMMARY_KEYS


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def test_detection_trains_evaluates_like_pycocotools_and_predicts(
    shapes_root, tmp_path, pyramid_config
):
    run_dir, metrics = train(pyramid_config("det", {"det": {"name": "fcos", "num_convs": 1}}))
    assert {f"det/{k}" for k in ("mAP", "mAP50", "mAP75", "AR100")} <= set(metrics)
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    epoch_losses = [float(r["train/loss_epoch"]) for r in rows]
    assert epoch_losses[-1] < epoch_losses[0], epoch_losses
    # metrics.json is strict JSON: COCO's nan ("no large objects in 64 px images") is null
    saved = json.loads((run_dir / "metrics.json").read_text(), parse_constant=_not_json)
    assert math.isnan(metrics["det/mAP_large"]) and saved["det/mAP_large"] is None
    assert {k for k, v in saved.items() if v is None} == {k for k, v in metrics.items() if v != v}
    # metrics.csv holds the evaluators' own values (not Lightning's float32 copies): the row of
    # best.ckpt gives metrics.json's mAP to the last digit
    assert saved["det/mAP"] in [float(r["det/mAP"]) for r in rows if r.get("det/mAP")]

    preds_path = tmp_path / "preds.json"
    again = evaluate(run_dir / "checkpoints" / "best.ckpt", save_predictions=preds_path)
    results = json.loads(preds_path.read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(shapes_root / "val" / "annotations.json"))
        ev = COCOeval(gt, gt.loadRes(str(preds_path)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for key, value in zip(SUMMARY_KEYS, ev.stats, strict=True):
        ours = again[f"det/{key}"]
        assert (math.isnan(ours) and value < 0) or abs(ours - value) <= 1e-9, key

    # the checkpoint keeps its validation's best-F1 score threshold: predict's default conf
    assert 0 < saved["det/F1"] <= 1 and 0 < saved["det/F1_conf"] < 1
    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    assert model.meta["predict_conf"] == {"det": saved["det/F1_conf"]}
    # an evaluation of the model, at other thresholds too, leaves the kept one as it was; its
    # own best F1 is never under the score it kept detections at
    high = evaluate(model, conf=0.6)
    assert model.meta["predict_conf"] == {"det": saved["det/F1_conf"]}
    assert high["det/F1_conf"] >= 0.6 or (high["det/F1"] == 0 and math.isnan(high["det/F1_conf"]))
    image = read_image(shapes_root / "val" / "images" / "000001.png")
    (pred,) = model.predict([image])
    det = pred["det"]
    assert (det["scores"] > model.meta["predict_conf"]["det"]).all()
    (low,) = model.predict([image], conf=0.05)
    assert len(low["det"]["boxes"]) >= len(det["boxes"])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(
        det["labels"]
    )
    if len(det["boxes"]):
        assert set(det["names"]) <= {"circle", "square", "triangle"}
        assert (det["boxes"][:, 2:] <= 64.0001).all()
