"""Instance evaluation scores the ground truth the COCO reader kept, not the raw json
(issue 18 item 6): annotations without a usable segmentation (``segmentation: []``, none, a
polygon of 2 points) made pycocotools fail at the first validation. Their boxes are scored
with every other box; masks are scored on the images whose annotations all have one."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.data.readers.coco import CocoDataset
from visionkit.engine.runner import train
from visionkit.evaluation.coco import (
    SUMMARY_KEYS,
    CocoEvaluator,
    fill_gt_defaults,
    load_coco_gt,
    segm_results,
)
from visionkit.evaluation.tasks import TASKS

pytestmark = pytest.mark.reliability

SIZE = 64
CATEGORIES = [{"id": 3, "name": "a"}, {"id": 8, "name": "b"}]
UNMASKED = {12: [], 23: None, 31: [[1.0, 2.0, 3.0, 4.0]]}  # annotation id -> segmentation


def rectangle(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def write_dataset(root: Path, num_images: int = 4) -> Path:
    """``num_images`` 64x64 images with 3 rectangles each; the annotations of :data:`UNMASKED`
    have no usable segmentation (``None``: no ``segmentation`` key at all)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(1, num_images + 1):
        pixels = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"images/{i}.png", "width": SIZE, "height": SIZE})
        for j in range(1, 4):
            x, y = (float(v) for v in rng.integers(0, 40, 2))
            w, h = (float(v) for v in rng.integers(8, 24, 2))
            ann = {
                "id": 10 * i + j,
                "image_id": i,
                "category_id": CATEGORIES[j % 2]["id"],
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": rectangle(x, y, w, h),
            }
            if ann["id"] in UNMASKED:
                if UNMASKED[ann["id"]] is None:
                    del ann["segmentation"]
                else:
                    ann["segmentation"] = UNMASKED[ann["id"]]
            annotations.append(ann)
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def predictions(root: Path, seed: int = 1) -> dict[int, dict[str, torch.Tensor]]:
    """Per image: a jittered copy of every annotated box (those without masks too), its box as
    the mask, and one false positive; random scores."""
    rng = np.random.default_rng(seed)
    data = json.loads((root / "annotations.json").read_text())
    labels = {c["id"]: k for k, c in enumerate(CATEGORIES)}
    out = {}
    for image in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        boxes = [np.add(a["bbox"], rng.uniform(-2, 2, 4)) for a in anns]
        boxes.append(np.array([2.0, 40.0, 20.0, 20.0]))
        xyxy = np.clip([[x, y, x + w, y + h] for x, y, w, h in boxes], 0, SIZE)
        masks = np.zeros((len(xyxy), SIZE, SIZE), bool)
        for k, (x0, y0, x1, y1) in enumerate(np.round(xyxy).astype(int)):
            masks[k, y0:y1, x0:x1] = True
        out[image["id"]] = {
            "boxes": torch.tensor(xyxy, dtype=torch.float32),
            "scores": torch.tensor(rng.uniform(0.1, 1.0, len(xyxy)), dtype=torch.float32),
            "labels": torch.tensor([labels[a["category_id"]] for a in anns] + [0]),
            "masks": torch.from_numpy(masks),
        }
    return out


def run(evaluator: CocoEvaluator, preds: dict[int, dict[str, torch.Tensor]]) -> dict[str, float]:
    evaluator.reset()
    for image_id, prediction in preds.items():
        evaluator.process({"image_ids": torch.tensor([image_id])}, [prediction])
    return evaluator.evaluate()


def by_hand(
    gt_file: Path, results: list[dict], iou_type: str, image_ids: list[int] | None = None
) -> list[float]:
    """pycocotools on a json file, as its README runs it (``segm``: results without bbox),
    on ``image_ids`` (default: every image of the file)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(segm_results(results) if iou_type == "segm" else results)
        ev = COCOeval(gt, dt, iouType=iou_type)
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def same(ours: list[float], theirs: list[float]) -> bool:
    return all(
        (math.isnan(a) and b == -1) or abs(a - b) <= 1e-9 for a, b in zip(ours, theirs, strict=True)
    )


def test_instance_evaluator_scores_boxes_everywhere_and_masks_where_the_data_has_them(tmp_path):
    root = write_dataset(tmp_path / "data")
    dataset = CocoDataset(root, masks=True)
    warned = sorted(p.where for p in dataset.report.warnings)
    assert warned == [f"images/{i}.png (image id {i})" for i in (1, 2, 3)]
    evaluator = TASKS["instance"].evaluator("inst", None, dataset, None)
    metrics = run(evaluator, predictions(root))
    kept_ids = {a["id"] for a in evaluator.ground_truth["annotations"]}
    assert kept_ids == {10 * i + j for i in range(1, 5) for j in range(1, 4)}
    assert evaluator.left_out == 0  # every box is scored
    assert evaluator.ground_truth["info"]["images_without_masks"] == [1, 2, 3]

    # pycocotools by hand: boxes on the file as it is; masks on the image whose annotations
    # all have a segmentation (image 4)
    keys = ["mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large"]
    keys += ["AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]
    gt_file = root / "annotations.json"
    theirs = by_hand(gt_file, evaluator.results, "bbox")
    assert same([metrics[f"inst/{k}"] for k in keys], theirs), theirs
    masked = [r for r in evaluator.results if r["image_id"] == 4]
    theirs = by_hand(gt_file, masked, "segm", image_ids=[4])
    assert same([metrics[f"inst/mask_{k}"] for k in keys], theirs), theirs
    assert 0.2 < metrics["inst/mask_mAP"] < 1.0  # a real score: the predictions match
    assert evaluator.details["segm"]["image_ids"] == [4]

    # the raw file is what failed before: pycocotools cannot read these segmentations
    raw = CocoEvaluator("inst", root / "annotations.json", [3, 8], ("bbox", "segm"))
    with pytest.raises((IndexError, KeyError, TypeError)):
        run(raw, predictions(root))


def test_an_instance_head_on_a_set_without_masks_is_scored_for_boxes(tmp_path, caplog):
    root = write_dataset(tmp_path / "data", num_images=2)
    data = json.loads((root / "annotations.json").read_text())
    for ann in data["annotations"]:
        ann.pop("segmentation", None)
    (root / "annotations.json").write_text(json.dumps(data))
    dataset = CocoDataset(root, masks="auto")  # what a config's instance head asks for
    evaluator = TASKS["instance"].evaluator("inst", None, dataset, None)
    assert evaluator.iou_types == ("bbox",) and evaluator.main_metric == "mAP"
    assert "gives no instance masks: scored for boxes only" in caplog.text
    metrics = run(evaluator, predictions(root))
    assert 0.0 < metrics["inst/mAP"] <= 1.0 and "inst/mask_mAP" not in metrics
    # masks asked for outright on the same file: every image lacks them, so boxes only too
    # (a mask_mAP of 0.0 over no image ranked the checkpoints)
    forced = TASKS["instance"].evaluator("inst", None, CocoDataset(root, masks=True), None)
    assert forced.iou_types == ("bbox",) and forced.main_metric == "mAP"


def test_detection_evaluator_leaves_out_the_boxes_the_reader_dropped(tmp_path):
    root = write_dataset(tmp_path / "data", num_images=2)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["bbox"][2] = 0  # zero width, no segmentation: dropped
    del data["annotations"][0]["segmentation"]
    (root / "annotations.json").write_text(json.dumps(data))
    dataset = CocoDataset(root)  # boxes only: the segmentations are not read
    evaluator = TASKS["detection"].evaluator("det", None, dataset, None)
    kept = {a["id"] for a in evaluator.ground_truth["annotations"]}
    assert kept == {12, 13, 21, 22, 23} and evaluator.left_out == 1
    # segmentations are not read for boxes: they reach the ground truth as the file has them
    by_id = {a["id"]: a for a in evaluator.ground_truth["annotations"]}
    assert by_id[12]["segmentation"] == [] and "segmentation" not in by_id[23]
    metrics = run(evaluator, predictions(root))
    assert 0.0 <= metrics["det/mAP"] <= 1.0


def test_the_annotations_of_a_skipped_image_count_as_left_out(tmp_path, caplog):
    """A missing image under ``on_bad_image: skip`` is not scored: its annotations are counted
    in ``left_out`` (which was 0, saying the file was scored as it is), and pycocotools on the
    file less them gives eval's numbers."""
    root = write_dataset(tmp_path / "data", num_images=3)
    (root / "images" / "2.png").unlink()
    dataset = CocoDataset(root, on_bad_image="skip")
    evaluator = TASKS["detection"].evaluator("det", None, dataset, None)
    assert evaluator.left_out == 3  # image 2's three boxes
    preds = predictions(root)
    del preds[2]
    metrics = run(evaluator, preds)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 2]
    (tmp_path / "less.json").write_text(json.dumps(data))
    ours = [metrics[f"det/{k}"] for k in SUMMARY_KEYS]
    assert same(ours, by_hand(tmp_path / "less.json", evaluator.results, "bbox"))


def test_ground_truth_without_area_is_measured_only_from_safe_geometry():
    """A segmentation pycocotools could hang on (nan) is not measured: the box gives the area."""
    data = {
        "images": [{"id": 1, "width": 10, "height": 10}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "bbox": [0, 0, 2, 3],
                "segmentation": [[0, 0, 4, 0, 4, math.nan]],
            },
            {"id": 2, "image_id": 1, "bbox": [0, 0, 2, 3], "segmentation": [[0, 0, 4, 0, 4, 4]]},
            {
                "id": 3,
                "image_id": 1,
                "bbox": [0, 0, 2, 3],
                "segmentation": {"size": [10, 10], "counts": [0, 200]},
            },
        ],
    }
    assert fill_gt_defaults(data) == {"area": 3, "iscrowd": 3, "id": 0, "iscrowd_text": 0}
    areas = [a["area"] for a in data["annotations"]]
    assert areas[0] == 6.0 and areas[2] == 6.0  # the box's w * h
    assert 6.0 <= areas[1] <= 12.0  # the triangle's own area, rasterised by pycocotools


def test_filled_areas_are_those_pycocotools_gives_the_annotations():
    """An area filled for a polygon or an RLE is pycocotools' ``mask.area(annToRLE(ann))``
    (what COCO's own files hold); a box-only annotation gets ``w * h``, as ``COCO.loadRes``
    gives a box."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((5, 7), np.uint8), 3)))
    rle["counts"] = rle["counts"].decode("ascii")
    annotations = [
        {"id": 1, "segmentation": [[1.5, 2.0, 20.25, 3.0, 11.0, 17.5]], "bbox": [1, 2, 19, 15]},
        {"id": 2, "segmentation": rle, "bbox": [3, 3, 7, 5]},
        {"id": 3, "segmentation": {"size": [32, 24], "counts": [40, 6, 26, 6, 690]}},
        {"id": 4, "bbox": [2.5, 4.0, 6.5, 3.0]},
    ]
    data = {
        "images": [{"id": 1, "height": 32, "width": 24}],
        "annotations": [{"image_id": 1, "category_id": 1, "area": None, **a} for a in annotations],
        "categories": [{"id": 1, "name": "a"}],
    }
    assert fill_gt_defaults(data)["area"] == 4
    coco = COCO()
    coco.dataset = {**data, "annotations": [dict(a) for a in data["annotations"]]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    for ann in data["annotations"][:3]:
        assert ann["area"] == float(mask_utils.area(coco.annToRLE(ann))), ann["id"]
    assert [a["area"] for a in data["annotations"][:3]] != [0.0, 0.0, 0.0]
    assert data["annotations"][3]["area"] == 6.5 * 3.0


def test_an_iscrowd_that_is_neither_0_nor_1_is_an_error_naming_the_annotation(tmp_path, capsys):
    """``"iscrowd": NaN`` (a dataframe's missing value) passed check-data, read as a crowd
    (NaN is true), and the first validation died in pycocotools' ``int(nan)``. The reader and
    the evaluator read ``iscrowd`` one way (``coco_fields.is_crowd``): 0, 1, true, false, null,
    absent, the text "0" / "1"; anything else is an error naming the annotation."""
    from tests.helpers import run as cli
    from visionkit.errors import DataError

    root = write_dataset(tmp_path / "data", num_images=2)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["iscrowd"] = float("nan")  # annotation 11
    data["annotations"][2]["iscrowd"] = 2  # annotation 13
    data["annotations"][3]["iscrowd"] = True  # annotation 21: a crowd, as 1
    (root / "annotations.json").write_text(json.dumps(data))  # NaN, as Python's json writes
    code, out, _ = cli(["check-data", "--format", "coco", "--images", root], capsys)
    assert code == 1
    assert "bad iscrowd: annotation id 11 (image id 1): iscrowd is nan; expected 0 (an" in out
    assert "annotation id 13 (image id 1): iscrowd is 2; expected 0" in out
    assert "annotation id 21" not in out
    with pytest.raises(DataError, match=r"a\.json: 2 annotations with a bad iscrowd: annotation "
                       r"id 11: iscrowd is nan; expected 0 \(an object\), 1 \(a crowd"):  # fmt: skip
        load_coco_gt("a.json", data)
    del data["annotations"][2]["iscrowd"], data["annotations"][0]["iscrowd"]
    gt = load_coco_gt("a.json", data)  # true is 1, as pycocotools' int() reads it
    assert [a["iscrowd"] for a in gt.loadAnns([11, 13, 21])] == [0, 0, 1]


def test_iscrowd_written_as_text_0_or_1_is_read_as_the_number(tmp_path, capsys):
    """``"iscrowd": "0"`` / ``"1"`` (a table's column exported as text) was a ``bad iscrowd``
    error. Read as 0 and 1, the evaluation sees the integers (pycocotools given the text would
    ignore the ``"0"`` object: ``"0"`` is true), as it does on the file with 0 and 1 written."""
    from tests.helpers import run as cli

    root = write_dataset(tmp_path / "data", num_images=2)
    data = json.loads((root / "annotations.json").read_text())
    for ann in data["annotations"]:
        ann["iscrowd"] = "0"
    data["annotations"][1]["iscrowd"] = " 1"  # annotation 12: a crowd region
    (root / "annotations.json").write_text(json.dumps(data))
    code, out, _ = cli(["check-data", "--format", "coco", "--images", root], capsys)
    assert code == 0 and "bad iscrowd" not in out
    assert "1 crowd region (iscrowd: 1)" in out
    dataset = CocoDataset(root)
    assert len(dataset[0]["boxes"]) == 2  # annotations 11 and 13: 12 is the crowd
    evaluator = TASKS["detection"].evaluator("det", None, dataset, None)
    metrics = run(evaluator, predictions(root))
    assert [a["iscrowd"] for a in evaluator.coco_gt.loadAnns([11, 12, 13])] == [0, 1, 0]
    for ann in data["annotations"]:
        ann["iscrowd"] = int(ann["iscrowd"])
    (tmp_path / "numbers.json").write_text(json.dumps(data))
    ours = [metrics[f"det/{k}"] for k in SUMMARY_KEYS]
    assert same(ours, by_hand(tmp_path / "numbers.json", evaluator.results, "bbox"))


def test_iscrowd_written_as_text_is_said_by_check_data_the_evaluation_and_eval_json(
    tmp_path, capsys, caplog
):
    """Text ``"0"`` / ``"1"`` was read as 0 / 1 without a word, while pycocotools run by hand
    on the same file reads ``"0"`` as a crowd (ignores those objects: its mAP was -1 where
    visionkit's was 0.53), and ``eval --json`` said the file was scored as it is. It is still
    read as 0 / 1, and said: a ``check-data`` warning, a warning of the evaluation, the
    ``iscrowd_text`` count of ``eval --json`` and the line of the readable report."""
    from tests.helpers import run as cli
    from visionkit.cli.evaluate import report, summary_lines

    root = write_dataset(tmp_path / "data", num_images=2)
    data = json.loads((root / "annotations.json").read_text())
    for ann in data["annotations"][:4]:  # annotations 11, 12, 13, 21
        ann["iscrowd"] = "0"
    data["annotations"][4]["iscrowd"] = "1"  # annotation 22: a crowd region
    (root / "annotations.json").write_text(json.dumps(data))
    code, out, _ = cli(["check-data", "--format", "coco", "--images", root], capsys)
    assert code == 0 and "bad iscrowd" not in out
    assert (
        f"iscrowd as text: {root / 'annotations.json'}: 5 annotations with iscrowd written as "
        "text, read as 0/1; pycocotools on the file as it is treats any non-empty text as crowd"
    ) in out
    assert "write integers: annotation ids 11, 12, 13, 21, 22" in out
    evaluator = TASKS["detection"].evaluator("det", None, CocoDataset(root), None)
    with caplog.at_level(logging.WARNING):
        run(evaluator, predictions(root))
    assert "5 annotations with iscrowd written as text, read as 0/1" in caplog.text
    assert evaluator.iscrowd_text == 5
    assert report({}, {"det": evaluator})["iscrowd_text"] == {"det": 5}
    assert "5 annotations with iscrowd written as text" in summary_lines(evaluator, "det")[0]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools on the file as it is
        assert COCO(str(root / "annotations.json")).loadAnns(11)[0]["iscrowd"]  # "0" is true
    numbers = write_dataset(tmp_path / "numbers", num_images=2)
    evaluator = TASKS["detection"].evaluator("det", None, CocoDataset(numbers), None)
    run(evaluator, predictions(numbers))
    assert evaluator.iscrowd_text == 0 and report({}, {"det": evaluator})["iscrowd_text"] == {
        "det": 0
    }


def test_an_annotation_without_id_is_scored_not_a_key_error(tmp_path, caplog):
    """COCO's createIndex needs every annotation's ``id``: one without it (a hand-written or
    converted json) stopped the first validation with ``KeyError: 'id'``. It gets one after
    the largest id, with a warning, and pycocotools on the file so numbered agrees."""
    root = write_dataset(tmp_path / "data", num_images=2)
    data = json.loads((root / "annotations.json").read_text())
    del data["annotations"][1]["id"]  # annotation 12
    (root / "annotations.json").write_text(json.dumps(data))
    evaluator = TASKS["detection"].evaluator("det", None, CocoDataset(root), None)
    with caplog.at_level(logging.WARNING):
        metrics = run(evaluator, predictions(root))
    assert "1 without 'id'" in caplog.text
    data["annotations"][1]["id"] = 24  # after the largest, 23
    (tmp_path / "numbered.json").write_text(json.dumps(data))
    ours = [metrics[f"det/{k}"] for k in SUMMARY_KEYS]
    assert same(ours, by_hand(tmp_path / "numbered.json", evaluator.results, "bbox"))


def test_an_annotation_without_id_beside_ids_written_as_floats_takes_a_free_id(tmp_path):
    """Ids written ``1.0, 2.0`` (a tool's floats) are the numbers 1 and 2 to COCO: the one
    without an id takes 3, not 1, which pycocotools' index would keep in place of 1.0 (a box
    lost, another scored twice)."""
    data = {
        "images": [{"id": 1, "height": 10, "width": 10}],
        "annotations": [
            {"id": 1.0, "image_id": 1, "bbox": [0, 0, 2, 2], "category_id": 1},
            {"id": 2.0, "image_id": 1, "bbox": [5, 5, 2, 2], "category_id": 1},
            {"image_id": 1, "bbox": [1, 6, 3, 3], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    gt = load_coco_gt("a.json", data)
    boxes = [a["bbox"] for a in gt.loadAnns(gt.getAnnIds(imgIds=[1]))]
    assert sorted(boxes) == [[0, 0, 2, 2], [1, 6, 3, 3], [5, 5, 2, 2]]


def test_instance_training_validates_on_a_dataset_with_dropped_annotations(tmp_path):
    root = write_dataset(tmp_path / "data")
    spec = {"format": "coco", "images": str(root)}
    config = {
        "name": "kept",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"inst": {"name": "fcos_mask", "num_convs": 1, "proto_channels": 16}},
        },
        "data": {"train": spec, "val": spec, "image_size": SIZE, "batch_size": 2, "num_workers": 0},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 1,
            "accelerator": "cpu",
            "precision": "32-true",
            "enable_progress_bar": False,
        },
    }
    _, metrics = train(config)
    assert 0.0 <= metrics["inst/mask_mAP"] <= 1.0 and 0.0 <= metrics["inst/mAP"] <= 1.0
