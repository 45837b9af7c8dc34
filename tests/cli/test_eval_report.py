"""``visionkit eval`` reads like COCO's (issue 19, item 2): pycocotools' own 12-line summary
before the per-class table, ``--json`` (one object on stdout, nothing else there), threshold
overrides (``--conf`` / ``--iou`` / ``--max-det``), and the precision-recall / confusion PNGs in a
new ``<run>/eval`` (``eval-2``, ...) folder, ``--no-plots`` to skip them.

The detector is trained for 6 short epochs on 8 tiny images (about 6 s), enough for an AP well
above 0, so the numbers compared are not all zeros."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import detection_config, make_coco, run
from visionkit.cli import main
from visionkit.evaluation.plots import eval_dir

# The first words of COCOeval.summarize()'s 12 lines, in order, and the metric of each.
SUMMARY = [
    (" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]", "det/mAP"),
    (" Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]", "det/mAP50"),
    (" Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]", "det/mAP75"),
    (" Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]", "det/mAP_small"),
    (" Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]", "det/mAP_medium"),
    (" Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]", "det/mAP_large"),
    (" Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]", "det/AR1"),
    (" Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]", "det/AR10"),
    (" Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]", "det/AR100"),
    (" Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]", "det/AR_small"),
    (" Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]", "det/AR_medium"),
    (" Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]", "det/AR_large"),
]
PNGS = [
    "pr_curve_det.png",
    "f1_curve_det.png",
    "confusion_matrix_det.png",
    "confusion_matrix_det_normalized.png",
]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A tiny FCOS trained for 24 steps on 8 images, evaluated on the same 8 images."""
    root = tmp_path_factory.mktemp("detector")
    data = make_coco(root / "data", num_images=8)
    config = detection_config(root / "config.yaml", data, data)
    overrides = ["trainer.max_epochs=6", "trainer.limit_train_batches=null"]
    overrides += ["trainer.limit_val_batches=null", "optimizer.lr=0.01"]
    argv = ["train", "--config", config, "--output-dir", root / "run", *overrides]
    assert main([str(a) for a in argv]) == 0
    return {"root": root, "run": root / "run", "ckpt": root / "run/checkpoints/best.ckpt"}


def evaluate(detector, capsys, *options):
    argv = ["eval", "--checkpoint", detector["ckpt"], "trainer.limit_val_batches=null", *options]
    code, out, err = run(argv, capsys)
    assert code == 0, err[-2000:]
    return out, err


def test_the_summary_is_pycocotools_own_and_equals_the_metrics(detector, capsys):
    out, _ = evaluate(detector, capsys, "--no-plots")
    lines = out.strip().splitlines()
    metrics = json.loads(lines[-1])  # the last line of stdout stays the metrics
    assert metrics["det/mAP"] > 0.2  # a trained detector: the comparisons below mean something
    heading = lines.index("COCO bbox summary of `det` (pycocotools COCOeval.summarize)")
    summary = lines[heading + 1 : heading + 13]
    for line, (start, key) in zip(summary, SUMMARY, strict=True):
        assert line.startswith(start + " = "), line
        value = metrics[key]
        assert line.endswith(" = " + ("-1.000" if value is None else f"{value:.3f}")), line
    # the boxes' best F1 and where, as the metrics have them (predict's default --conf)
    assert lines[heading + 14] == (
        f"Best F1 of `det` (bbox, IoU 0.50, mean over classes): {metrics['det/F1']:.3f} at score "
        f"{metrics['det/F1_conf']:.2f} (precision {metrics['det/P']:.3f}, recall "
        f"{metrics['det/R']:.3f})"
    )
    assert 0 < metrics["det/F1"] <= 1
    table = lines.index("| category_id | name | instances | AP | AP50 | AP75 |")
    assert table > heading + 14  # the per-class table follows the summary
    assert not (detector["run"] / "eval").exists()  # --no-plots


def test_json_prints_one_object_with_metrics_per_class_and_summary(detector, capsys):
    plain, _ = evaluate(detector, capsys, "--no-plots")
    out, err = evaluate(detector, capsys, "--no-plots", "--json", "--device", "cpu")
    report = json.loads(out)  # the whole of stdout is one JSON object
    keys = {"split", "metrics", "per_class", "summary", "confusion", "plots", "left_out"}
    assert set(report) == keys | {"boxes_from_segmentation", "iscrowd_text"}
    assert report["split"] == "val" and report["left_out"] == {"det": 0}  # nothing dropped
    assert report["boxes_from_segmentation"] == {"det": 0}  # every bbox of the file usable
    assert report["iscrowd_text"] == {"det": 0}  # every iscrowd of the file a number
    assert report["metrics"] == json.loads(plain.strip().splitlines()[-1])
    assert [row["name"] for row in report["per_class"]["det"]] == ["square", "disc"]
    assert set(report["per_class"]["det"][0]) == {
        "category_id", "name", "instances", "AP", "AP50", "AP75"
    }  # fmt: skip
    summary = report["summary"]["det"]["bbox"]
    assert len(summary) == 12 and summary[0] in plain.splitlines()
    assert report["plots"] == [] and "Average Precision" not in err
    confusion = report["confusion"]["det"]
    assert confusion["classes"] == ["square", "disc", "background"]
    assert (confusion["conf"], confusion["iou"]) == (0.25, 0.5)


def test_the_confusion_matrix_counts_from_025_unless_asked_and_is_in_the_json(
    detector, capsys, tmp_path
):
    """--conf 0.001 (the mAP setting) leaves the matrix at 0.25, as Ultralytics does; the
    JSON matrix is coco_confusion of the evaluated predictions at that score; --matrix-conf
    sets it as given."""
    from visionkit.evaluation.coco import load_coco_gt
    from visionkit.evaluation.plots import coco_confusion

    saved = tmp_path / "predictions.json"
    argv = ["--no-plots", "--json", "--conf", "0.001", "--save-predictions", saved]
    low = json.loads(evaluate(detector, capsys, *argv)[0])["confusion"]["det"]
    assert low["conf"] == 0.25 and low["classes"] == ["square", "disc", "background"]
    results = json.loads(saved.read_text())
    assert min(r["score"] for r in results) < 0.25  # scored for mAP, left out of the matrix
    gt = load_coco_gt(detector["root"] / "data" / "annotations.json")
    expected = coco_confusion(gt, results, gt.getImgIds(), low["category_ids"], conf=0.25)
    assert low["matrix"] == expected.tolist()
    matrix = np.asarray(low["matrix"])
    assert matrix[:, :2].sum() == len(gt.getAnnIds(iscrowd=False))  # each true box once
    assert np.trace(matrix[:2, :2]) > 0  # the trained detector finds some
    asked = json.loads(evaluate(detector, capsys, *argv[:4], "--matrix-conf", "0.001")[0])
    counted = np.asarray(asked["confusion"]["det"]["matrix"])
    assert asked["confusion"]["det"]["conf"] == 0.001
    assert counted[:2].sum() > matrix[:2].sum()  # more detections counted at 0.001


def test_conf_099_keeps_fewer_detections_and_lowers_ap(detector, capsys, tmp_path):
    def predictions(*options):
        path = tmp_path / f"predictions{len(list(tmp_path.iterdir()))}.json"
        out, _ = evaluate(detector, capsys, "--no-plots", "--save-predictions", path, *options)
        return json.loads(path.read_text()), json.loads(out.strip().splitlines()[-1])

    default, metrics = predictions()
    strict, strict_metrics = predictions("--conf", "0.99")
    assert len(strict) < len(default) and all(r["score"] > 0.99 for r in strict)
    assert min(r["score"] for r in default) < 0.25  # the head's own low threshold (0.05)
    assert strict_metrics["det/mAP"] < metrics["det/mAP"]
    capped, _ = predictions("--max-det", "1")
    per_image = [r["image_id"] for r in capped]
    assert max(per_image.count(i) for i in per_image) == 1 < len(default) / 8


@pytest.mark.reliability
def test_thresholds_out_of_range_and_half_on_the_cpu_are_refused(detector, capsys):
    argv = ["eval", "--checkpoint", detector["ckpt"], "--conf", "1.5", "--max-det", "0"]
    code, out, err = run(argv, capsys)
    assert code == 2 and not out.strip()
    assert "conf (--conf): a score threshold in [0, 1), got 1.5" in err
    assert "max_det (--max-det): at least 1 detection per image, got 0" in err
    code, out, err = run(["eval", "--checkpoint", detector["ckpt"], "--matrix-conf", "2"], capsys)
    assert code == 2 and "--matrix-conf: a score threshold in [0, 1], got 2.0" in err
    code, out, err = run(
        ["eval", "--checkpoint", detector["ckpt"], "--device", "cpu", "--half"], capsys
    )
    assert code == 2 and not out.strip()
    assert "half (--half): float16 inference needs a CUDA GPU or MPS; the device is the CPU" in err


def test_plots_go_to_a_new_eval_folder_each_time(detector, capsys):
    out, _ = evaluate(detector, capsys)
    first = detector["run"] / "eval"
    lines = out.splitlines()
    at = lines.index(f"Plots: {first} ({', '.join(PNGS)})")
    assert lines[at + 1] == (
        "Confusion matrices: detections scoring >= 0.25 (max(--conf, 0.25)), matched to true "
        "boxes at IoU >= 0.5"
    )
    stamps = {}
    for name in PNGS:
        path = first / name
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 200
        stamps[name] = path.stat().st_mtime_ns
    out, _ = evaluate(detector, capsys, "--json")
    second = detector["run"] / "eval-2"
    assert json.loads(out)["plots"] == [str(second / name) for name in PNGS]
    assert all((second / name).stat().st_size > 0 for name in PNGS)
    assert {n: (first / n).stat().st_mtime_ns for n in PNGS} == stamps  # never overwritten


def test_eval_dir_is_next_to_the_run_or_the_checkpoint(tmp_path):
    run_ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    loose = tmp_path / "weights" / "model.ckpt"
    assert eval_dir(run_ckpt) == tmp_path / "run" / "eval"
    assert eval_dir(run_ckpt) == tmp_path / "run" / "eval-2"
    (tmp_path / "run" / "eval-3").mkdir()  # taken, e.g. by another process
    assert eval_dir(run_ckpt) == tmp_path / "run" / "eval-4"
    assert eval_dir(loose) == tmp_path / "weights" / "eval"
