"""The semantic evaluator against confusion matrices, IoUs and accuracies worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visionkit.errors import DataError
from visionkit.evaluation.semantic import SemanticEvaluator, iou_from_confusion

NAMES = ["bg", "cat", "dog", "bird"]

# Image 1 (4x4); 255 = ignore. "bird" (3) is in neither the labels nor the prediction.
GT_1 = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 255, 255],
        [2, 2, 2, 0],
    ],
    dtype=np.uint8,  # label PNGs are uint8
)
PRED_1 = torch.tensor(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 0],
        [2, 1, 2, 2],
        [2, 2, 0, 0],
    ]
)
# Rows: ground truth, columns: prediction; the two ignored pixels are not counted.
CONF_1 = [
    [4, 1, 0, 0],
    [1, 3, 0, 0],
    [1, 1, 3, 0],
    [0, 0, 0, 0],
]
# IoU = TP / (TP + FP + FN): bg 4 / (4 + 2 + 1), cat 3 / (3 + 2 + 1), dog 3 / (3 + 0 + 2).
IOU_1 = [4 / 7, 0.5, 0.6]

# Image 2 (2x2) adds "bird".
GT_2 = np.array([[3, 3], [3, 0]])
PRED_2 = torch.tensor([[3, 3], [0, 0]])
CONF_12 = [  # CONF_1 + image 2
    [5, 1, 0, 0],
    [1, 3, 0, 0],
    [1, 1, 3, 0],
    [1, 0, 0, 2],
]


class FakeDataset:
    """Label maps by image id, as ``load_semantic`` of a real dataset returns them."""

    def __init__(self, maps: dict[int, np.ndarray | None]) -> None:
        self.maps = maps
        self.calls: list[int] = []

    def load_semantic(self, image_id: int) -> np.ndarray | None:
        self.calls.append(image_id)
        return self.maps[image_id]


def make_evaluator(maps=None, class_names=NAMES) -> SemanticEvaluator:
    maps = {1: GT_1, 2: GT_2} if maps is None else maps
    return SemanticEvaluator("seg", 4, class_names, FakeDataset(maps))


def batch(*ids: int) -> dict[str, torch.Tensor]:
    return {"image_ids": torch.tensor(ids)}


def test_one_image_equals_the_hand_computed_confusion_matrix():
    ev = make_evaluator()
    ev.process(batch(1), [{"mask": PRED_1}])
    assert ev.confusion.dtype == torch.int64
    assert ev.confusion.tolist() == CONF_1
    metrics = ev.evaluate()
    assert set(metrics) == {
        "seg/mIoU",
        "seg/pixel_acc",
        "seg/IoU_bg",
        "seg/IoU_cat",
        "seg/IoU_dog",
        "seg/IoU_bird",
    }
    assert all(type(v) is float for v in metrics.values())
    assert metrics["seg/IoU_bg"] == pytest.approx(4 / 7)
    assert metrics["seg/IoU_cat"] == pytest.approx(0.5)
    assert metrics["seg/IoU_dog"] == pytest.approx(0.6)
    assert math.isnan(metrics["seg/IoU_bird"])  # absent on both sides: not a zero
    assert metrics["seg/mIoU"] == pytest.approx(sum(IOU_1) / 3)  # bird left out of the mean
    assert metrics["seg/pixel_acc"] == pytest.approx(10 / 14)
    assert ev.global_confusion.tolist() == CONF_1


def test_ignored_pixels_are_not_counted():
    other = PRED_1.clone()
    other[2, 2:] = torch.tensor([0, 3])  # change the prediction where the label is 255
    ev = make_evaluator()
    ev.process(batch(1), [{"mask": other}])
    assert ev.confusion.tolist() == CONF_1
    assert ev.confusion.sum() == 14


def test_several_calls_accumulate_like_one_batch():
    one_call = make_evaluator()
    one_call.process(batch(1, 2), [{"mask": PRED_1}, {"mask": PRED_2}])
    two_calls = make_evaluator()
    two_calls.process(batch(1), [{"mask": PRED_1}])
    two_calls.process(batch(2), [{"mask": PRED_2}])
    assert one_call.confusion.tolist() == two_calls.confusion.tolist() == CONF_12
    metrics = two_calls.evaluate()
    # bg 5 / (5 + 3 + 1), cat 3 / 6, dog 3 / 5, bird 2 / (2 + 0 + 1); 13 of 18 pixels right.
    ious = [5 / 9, 0.5, 0.6, 2 / 3]
    for name, iou in zip(NAMES, ious, strict=True):
        assert metrics[f"seg/IoU_{name}"] == pytest.approx(iou), name
    assert metrics["seg/mIoU"] == pytest.approx(sum(ious) / 4)
    assert metrics["seg/pixel_acc"] == pytest.approx(13 / 18)
    assert one_call.evaluate() == metrics


def test_reset_clears_and_empty_evaluate_gives_zeros():
    ev = make_evaluator()
    ev.process(batch(1), [{"mask": PRED_1}])
    ev.evaluate()
    ev.reset()
    assert ev.confusion.sum() == 0 and ev.global_confusion is None
    metrics = ev.evaluate()
    assert metrics["seg/mIoU"] == 0.0 and metrics["seg/pixel_acc"] == 0.0
    assert all(math.isnan(metrics[f"seg/IoU_{n}"]) for n in NAMES)
    ev.process(batch(2), [{"mask": PRED_2}])
    assert ev.confusion.sum() == 4  # image 1 is gone


def test_class_indices_name_the_keys_without_class_names():
    ev = make_evaluator(class_names=None)
    ev.process(batch(1), [{"mask": PRED_1}])
    metrics = ev.evaluate()
    assert {k for k in metrics if "IoU_" in k} == {f"seg/IoU_{i}" for i in range(4)}
    assert metrics["seg/IoU_0"] == pytest.approx(4 / 7)


def test_size_mismatch_names_the_image_and_both_shapes():
    ev = make_evaluator({7: GT_1})
    with pytest.raises(DataError, match=r"image 7.*\(4, 4\).*\(4, 5\)"):
        ev.process(batch(7), [{"mask": torch.zeros(4, 5, dtype=torch.long)}])


def test_bad_labels_and_unlabelled_images():
    bad = GT_1.copy()
    bad[0, 0] = 9
    ev = make_evaluator({1: bad, 2: None})
    ev.process(batch(2), [{"mask": PRED_2}])  # no semantic label: skipped
    assert ev.confusion.sum() == 0
    with pytest.raises(DataError, match=r"image 1.*\[9\]"):
        ev.process(batch(1), [{"mask": PRED_1}])
    with pytest.raises(ValueError, match="class_names"):
        SemanticEvaluator("seg", 3, NAMES, FakeDataset({}))
    with pytest.raises(ValueError, match="predictions"):
        make_evaluator().process(batch(1, 2), [{"mask": PRED_1}])


def test_iou_from_confusion():
    iou = iou_from_confusion(torch.tensor(CONF_12))
    torch.testing.assert_close(iou, torch.tensor([5 / 9, 0.5, 0.6, 2 / 3], dtype=torch.float64))
    assert iou_from_confusion(torch.zeros(2, 2, dtype=torch.long)).isnan().all()
