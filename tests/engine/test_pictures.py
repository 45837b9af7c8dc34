"""Validation pictures and tables (visionkit/engine/pictures.py), curves and loggers."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

import visionkit
from visionkit.engine.callbacks import curve_panels, make_loggers, plot_curves
from visionkit.engine.pictures import (
    ValidationPictures,
    ground_truth,
    write_class_tables,
)
from visionkit.evaluation.coco import CocoEvaluator


def test_the_confusion_matrix_is_the_classification_evaluators_own(tmp_path):
    """plots/confusion_<head>.png after a validation: drawn from the counts the evaluator made
    (images without a class label not counted), no second count of its own."""
    from visionkit.engine.pictures import class_confusion
    from visionkit.evaluation.classification import ClassificationEvaluator

    evaluator = ClassificationEvaluator("cls", 3, ["a", "b", "c"])
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, -1, 1])  # -1: no class label, not counted
    scores = torch.randn(5, 3)
    batch = {"image_ids": torch.arange(1, 6), "class": labels}
    evaluator.process(batch, [{"scores": s} for s in scores])
    evaluator.evaluate()
    expected = torch.zeros(3, 3, dtype=torch.long)
    for t, p in zip(labels.tolist(), scores.argmax(1).tolist(), strict=True):
        if t >= 0:
            expected[t, p] += 1
    counts, names, unit = class_confusion(evaluator)
    assert torch.equal(counts, expected) and (names, unit) == (["a", "b", "c"], "images")
    callback = ValidationPictures(tmp_path)
    fitting = SimpleNamespace(fn=TrainerFn.FITTING)  # no prediction grid: no model needed
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, state=fitting)
    module = SimpleNamespace(model=None, evaluators={"cls": evaluator})
    callback.on_validation_end(trainer, module)
    assert (tmp_path / "plots" / "confusion_cls.png").stat().st_size > 0
    assert (tmp_path / "per_class_recall_cls.csv").is_file()


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ({"pets": 3, "shapes": 3}, ["pets: prediction, image 0", "pets: ground truth, image 0",
                                    "pets: prediction, image 1", "pets: ground truth, image 1",
                                    "shapes: prediction, image 0", "shapes: ground truth, image 0",
                                    "shapes: prediction, image 1", "shapes: ground truth, image 1"]),
        ({"val": 3}, ["prediction, image 0", "ground truth, image 0", "prediction, image 1",
                      "ground truth, image 1", "prediction, image 2", "ground truth, image 2"]),
    ],
)  # fmt: skip
def test_the_prediction_grid_names_the_validation_set_of_each_image(
    tmp_path, monkeypatch, sets, expected
):
    """With several validation sets (a mix), each caption of val_predictions.png starts with
    its set's name, so the images of two sets are told apart; one set: captions unchanged."""
    from PIL import ImageDraw

    captions = []
    monkeypatch.setattr(
        ImageDraw.ImageDraw, "text", lambda self, xy, text, **kw: captions.append(text)
    )
    val = {name: [{"image": np.zeros((8, 8, 3), np.uint8), "image_id": i} for i in range(n)]
           for name, n in sets.items()}  # fmt: skip
    model = SimpleNamespace(
        heads={}, meta={}, predict=lambda images, batch_size: [{}] * len(images)
    )
    trainer = SimpleNamespace(
        sanity_checking=False, is_global_zero=True, state=SimpleNamespace(fn=TrainerFn.VALIDATING)
    )
    callback = ValidationPictures(tmp_path, val if len(val) > 1 else val["val"], num_images=4)
    callback.on_validation_end(trainer, SimpleNamespace(model=model, evaluators={}))
    assert captions == expected
    assert (tmp_path / "plots" / "val_predictions.png").is_file()


def test_the_class_tables_mean_counts_a_class_never_predicted_as_precision_0():
    """Its precision was left out of the mean (0.857 for 0.571), a flattering number that
    torchmetrics and scikit-learn would not give; a class neither labelled nor predicted is
    left out."""
    from visionkit.engine.pictures import class_table
    from visionkit.evaluation.classification import ClassificationEvaluator

    evaluator = ClassificationEvaluator("cls", 4, ["a", "b", "c", "d"])
    labels = torch.tensor([0, 0, 1, 1, 2])  # "c" is never predicted, "d" neither labelled
    predicted = torch.tensor([0, 1, 1, 1, 0])
    scores = torch.nn.functional.one_hot(predicted, 4).float()
    evaluator.process(
        {"image_ids": torch.arange(5), "class": labels}, [{"scores": s} for s in scores]
    )
    evaluator.evaluate()
    _, rows = class_table(evaluator)
    assert math.isnan(rows[2]["precision"]) and rows[2]["images"] == 1  # shown n/a
    mean = rows[-1]  # scikit-learn's precision_score(labels=[0, 1, 2], zero_division=0)
    assert mean["precision"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert mean["recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def coco_gt(tmp_path):
    gt = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in (1, 2)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 30, 30], "area": 900,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [50, 50, 20, 20], "area": 400,
             "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [5, 60, 30, 30], "area": 900,
             "iscrowd": 0},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 11, "name": "owl"}],
    }  # fmt: skip
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


def test_per_class_ap_reads_coco_precision_per_category(tmp_path):
    evaluator = CocoEvaluator("det", coco_gt(tmp_path), category_ids=[7, 9, 11])
    with pytest.raises(RuntimeError, match="no 'bbox' evaluation yet"):
        evaluator.per_class_ap()
    batch = {"image_ids": torch.tensor([1, 2])}
    predictions = [
        {"boxes": torch.tensor([[10.0, 10, 40, 40]]), "scores": torch.tensor([0.9]),
         "labels": torch.tensor([0])},
        {"boxes": torch.tensor([[50.0, 50, 70, 70], [60.0, 0, 90, 30]]),
         "scores": torch.tensor([0.8, 0.7]), "labels": torch.tensor([0, 1])},
    ]  # fmt: skip
    evaluator.process(batch, predictions)
    metrics = evaluator.evaluate()
    rows = {r["name"]: r for r in evaluator.per_class_ap()}
    assert rows["cat"]["AP"] == pytest.approx(1.0) and rows["cat"]["instances"] == 2
    assert rows["dog"]["AP"] == 0.0 and rows["dog"]["AP50"] == 0.0  # predicted in the wrong place
    assert math.isnan(rows["owl"]["AP"]) and rows["owl"]["instances"] == 0
    assert metrics["det/mAP"] == pytest.approx((rows["cat"]["AP"] + rows["dog"]["AP"]) / 2)

    write_class_tables(evaluator, tmp_path, "det")
    with open(tmp_path / "per_class_ap_det.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["cat", "dog", "owl", "mean"]
    assert float(table[-1]["AP"]) == pytest.approx(metrics["det/mAP"])
    markdown = (tmp_path / "per_class_ap_det.md").read_text()
    assert "| 7 | cat | 2 | 1.000 | 1.000 | 1.000 |" in markdown
    assert "| 11 | owl | 0 | n/a | n/a | n/a |" in markdown


def test_the_ground_truth_of_an_image_without_objects_has_no_keypoints():
    """A keypoint set's negative image (no annotation: keypoints ``[0, K, 3]``) in the
    validation pictures: an empty entry, not a reshape error at the end of validation."""
    model = visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
                "neck": {"name": "fpn", "out_channels": 16},
                "heads": {"pose": {"name": "fcos_keypoints", "num_classes": 1, "num_keypoints": 4}},
            }
        },
    )
    sample = {
        "image": np.zeros((20, 30, 3), np.uint8),
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "keypoints": np.zeros((0, 4, 3), np.float32),
    }
    truth = ground_truth(model, sample)["pose"]
    assert truth["keypoints"].shape == (0, 4, 3)


def test_ground_truth_is_drawn_like_a_prediction_without_scores():
    model = visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
                "neck": {"name": "fpn", "out_channels": 16},
                "heads": {
                    "cls": {"name": "linear", "num_classes": 2},
                    "det": {"name": "fcos", "num_classes": 2, "num_convs": 1},
                    "seg": {"name": "semantic_fpn", "channels": 16, "num_classes": 3},
                },
            }
        },
        label_names={
            "class": ["day", "night"],
            "instances": ["a", "b"],
            "semantic": ["bg", "a", "b"],
        },
    )
    semantic = np.zeros((20, 30), np.int64)
    semantic[0, 0] = 255
    semantic[5:10, 5:10] = 2
    sample = {
        "image": np.zeros((20, 30, 3), np.uint8),
        "class": 1,
        "boxes": np.array([[1.0, 2.0, 11.0, 12.0]], np.float32),
        "labels": np.array([1]),
        "semantic": semantic,
    }
    truth = ground_truth(model, sample)
    assert truth["cls"] == {"label": 1, "name": "night", "scores": None}
    assert truth["det"]["boxes"].tolist() == [[1.0, 2.0, 11.0, 12.0]] and truth["det"]["names"] == [
        "b"
    ]
    assert truth["seg"]["mask"][0, 0] == -1 and truth["seg"]["mask"][6, 6] == 2  # ignored: -1
    from visionkit.inference.predict import draw_predictions

    drawn = draw_predictions(sample["image"], truth)
    assert drawn[7, 1].any()  # the box's left edge
    assert drawn.shape[0] > 20  # the semantic legend strip


def test_curve_panels_show_each_heads_loss_and_every_learning_rate():
    keys = ["lr", "train/loss_epoch", "val/loss", "train/cls/loss_epoch", "train/cls/ce_epoch",
            "train/det/loss_epoch", "train/det/weight_epoch", "train/lr", "train/lr_backbone",
            "cls/top1", "det/mAP", "val/score"]  # fmt: skip
    panels = dict(curve_panels(keys))
    assert panels["loss"] == ["train/loss_epoch", "val/loss"]
    assert panels["loss per head (train)"] == ["train/cls/loss_epoch", "train/det/loss_epoch"]
    assert panels["cls metrics"] == ["cls/top1"] and panels["det metrics"] == ["det/mAP"]
    assert panels["mean of the heads' main metrics"] == ["val/score"]
    assert panels["learning rate"] == ["train/lr", "train/lr_backbone"]
    assert "loss per head (train)" not in dict(curve_panels(["train/cls/loss_epoch", "lr"]))
    assert dict(curve_panels(["lr"]))["learning rate"] == ["lr"]


def test_a_head_with_loss_in_its_name_keeps_its_metrics_on_the_curves():
    """Losses are told by the name after ``train/`` or ``val/``, not by "loss" anywhere in the
    key: the metrics of heads named ``glossy`` or ``lossy`` were left off the plot."""
    keys = ["lr", "train/loss_epoch", "val/loss", "train/glossy/loss_epoch",
            "train/lossy/loss_epoch", "glossy/mAP", "lossy/top1", "val/score"]  # fmt: skip
    panels = dict(curve_panels(keys))
    assert panels["loss"] == ["train/loss_epoch", "val/loss"]
    assert panels["glossy metrics"] == ["glossy/mAP"]
    assert panels["lossy metrics"] == ["lossy/top1"]
    assert panels["loss per head (train)"] == ["train/glossy/loss_epoch", "train/lossy/loss_epoch"]


def test_curve_panels_leave_the_breakdowns_to_metrics_csv():
    """Five heads' 60 metrics in one legend hid the plot (the legend ran off the figure): each
    head gets its own panel of its main figures; recall, per-size and per-class columns and the
    verification figures stay in metrics.csv."""
    keys = ["det/mAP", "det/mAP50", "det/mAP75", "det/AR100", "det/mAP_small", "det/AR_large",
            "pose/mAP", "pose/kpt_mAP", "pose/kpt_AR50", "pose/kpt_mAP_medium",
            "seg/mIoU", "seg/pixel_acc", "seg/IoU_sky", "emb/recall@1", "emb/mAP", "emb/auc",
            "emb/tar@far1e-3", "emb/threshold", "val/loss/dataloader_idx_0",
            "val/loss/dataloader_idx_1"]  # fmt: skip
    panels = dict(curve_panels(keys))
    assert panels["det metrics"] == ["det/mAP", "det/mAP50", "det/mAP75"]
    assert panels["pose metrics"] == ["pose/mAP", "pose/kpt_mAP"]
    assert panels["seg metrics"] == ["seg/mIoU", "seg/pixel_acc"]
    assert panels["emb metrics"] == ["emb/recall@1", "emb/mAP", "emb/auc"]
    assert panels["loss"] == ["val/loss/dataloader_idx_0", "val/loss/dataloader_idx_1"]


def test_curve_panels_of_several_validation_sets_and_monitors():
    """A head evaluated on several sets names its metrics <head>/<set>/<metric>; the
    breakdowns go by the last part. A LearningRateMonitor's columns join the learning rates."""
    keys = ["det/coco/mAP", "det/coco/AR100", "det/voc/mAP", "seg/a/mIoU", "seg/a/IoU_sky",
            "reid/mAP", "reid/id_auc", "reid/id_threshold", "reid/id_tar@far1e-3",
            "train/lr", "lr-AdamW", "lr-AdamW/pg1"]  # fmt: skip
    panels = dict(curve_panels(keys))
    assert panels["det metrics"] == ["det/coco/mAP", "det/voc/mAP"]
    assert panels["seg metrics"] == ["seg/a/mIoU"]
    assert panels["reid metrics"] == ["reid/mAP", "reid/id_auc"]
    assert panels["learning rate"] == ["train/lr", "lr-AdamW", "lr-AdamW/pg1"]
    assert set(panels) == {"loss", "det metrics", "seg metrics", "reid metrics", "learning rate"}


def test_curves_of_many_heads_are_drawn_four_panels_to_a_row(tmp_path):
    rows = [{"epoch": e, "step": 10 * e, "train/loss_epoch": 2.0 - e, "lr": 0.01,
             **{f"h{i}/mAP": 0.1 * e for i in range(6)}} for e in range(3)]  # fmt: skip
    plot_curves(rows, tmp_path / "curves.png")
    width, height = Image.open(tmp_path / "curves.png").size
    assert width < 3 * height  # 8 panels: 2 rows of 4 (20 × 7.2 in), not 1 row of 8 (40 × 3.6)


def test_make_loggers_adds_tensorboard_only_when_it_is_installed(tmp_path):
    import importlib.util

    names = [type(logger).__name__ for logger in make_loggers(tmp_path)]
    installed = importlib.util.find_spec("tensorboard") is not None
    assert names == (["StepLog", "TensorBoardLogger"] if installed else ["StepLog"])
    assert [type(x).__name__ for x in make_loggers(tmp_path, tensorboard=False)] == ["StepLog"]


def test_a_training_run_writes_the_pictures_and_tables(pyramid_config):
    from visionkit.engine.runner import train

    heads = {"cls": {"name": "linear"}, "det": {"name": "fcos", "num_convs": 1}}
    config = pyramid_config("pictures", heads)
    config["data"]["train"]["class_field"] = "background"
    config["data"]["val"]["class_field"] = "background"
    config["trainer"].update(max_epochs=1, limit_train_batches=2)
    run_dir, metrics = train(config)
    plots = run_dir / "plots"
    assert {p.name for p in plots.iterdir()} >= {
        "curves.png",
        "val_predictions.png",
        "confusion_cls.png",
    }
    with open(run_dir / "per_class_ap_det.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["circle", "square", "triangle", "mean"]
    assert float(table[-1]["AP"]) == pytest.approx(metrics["det/mAP"], abs=1e-9)
    from PIL import Image

    grid = Image.open(plots / "val_predictions.png")
    assert grid.height > grid.width  # 8 rows of (prediction, ground truth)


def test_small_validation_images_are_enlarged_before_their_predictions_are_drawn(
    tmp_path, monkeypatch
):
    """val_predictions.png drew a 32-pixel image's predictions at 32 pixels (8-pixel captions,
    cut to a few letters) and enlarged the drawing six times: blurred blocks. The image and
    its predictions are enlarged first, then drawn at 192 pixels, with readable captions."""
    from visionkit.engine import pictures
    from visionkit.inference.draw import enlarged

    drawn = []
    draw = pictures.draw_predictions
    monkeypatch.setattr(
        pictures, "draw_predictions", lambda image, p: drawn.append(image.shape) or draw(image, p)
    )
    cls = {"label": 1, "name": "automobile", "scores": torch.tensor([0.1, 0.9])}
    model = SimpleNamespace(
        heads={}, meta={}, predict=lambda images, batch_size: [{"cls": cls}] * len(images)
    )
    sample = {"image": np.zeros((32, 32, 3), np.uint8), "image_id": 0}
    pictures.write_prediction_grid(model, [sample], tmp_path / "grid.png")
    assert drawn == [(192, 192, 3), (192, 192, 3)]  # prediction and ground truth
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    result = {"boxes": torch.tensor([[0.0, 0.0, 1.0, 2.0]]), "masks": torch.eye(2)[None].bool(),
              "keypoints": torch.tensor([[[0.0, 1.0, 1.0]]]), "labels": torch.tensor([0])}  # fmt: skip
    big, grown = enlarged(image, {"det": result, "seg": {"mask": torch.eye(2)}}, 3)
    assert big.shape == (6, 6, 3) and (big[:3, :3] == image[0, 0]).all()
    assert grown["det"]["boxes"].tolist() == [[0.0, 0.0, 3.0, 6.0]]
    assert grown["det"]["keypoints"].tolist() == [[[1.0, 4.0, 1.0]]]  # about pixel centres
    assert grown["det"]["masks"].shape == (1, 6, 6) and grown["seg"]["mask"].shape == (6, 6)
    assert grown["det"]["labels"] is result["labels"]
