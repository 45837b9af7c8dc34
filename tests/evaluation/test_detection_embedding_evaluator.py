"""The ``fcos_embedding`` evaluator: COCO box metrics plus the embedding metrics of the
detections that match identity boxes, against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import make_coco
from visionkit.data.readers.coco import CocoDataset
from visionkit.errors import DataError
from visionkit.evaluation.detection_embedding import (
    detection_embedding_evaluator,
    identity_metrics,
)
from visionkit.evaluation.tasks import TASKS
from visionkit.models.heads.fcos_embedding import FCOSEmbeddingHead

GT = [8.0, 8.0, 16.0, 16.0]  # make_coco's one box per image (xyxy)


def _identities(data):
    for ann, name in zip(data["annotations"], ["a", "a", "b", "b"], strict=True):
        ann["identity"] = name


def _prediction(boxes, embeddings, labels):
    return {
        "boxes": torch.tensor(boxes),
        "scores": torch.linspace(0.9, 0.5, len(boxes)),
        "labels": torch.tensor(labels),
        "embeddings": torch.tensor(embeddings),
    }


@pytest.fixture
def dataset(tmp_path):
    return CocoDataset(make_coco(tmp_path / "d", edit=_identities), identities=True)


def test_metrics_by_hand(dataset, caplog):
    """Images 1-3 matched (image 1 by its exact detection, not the IoU-0.8 one), image 4's
    only detection overlaps its box by IoU 16/112 < 0.5: 3 of 4 identity boxes matched.
    Embeddings: 1 (a) = [1, 0], 2 (a) = [0.6, 0.8], 3 (b) = [0, 1]. Pairs: (1, 2) same at
    0.6; (1, 3) different at 0; (2, 3) different at 0.8: AUC = (1 + 0) / 2 = 0.5. Retrieval:
    gallery {1 (a), 3 (b)}, query 2 (a) ranks 3 (0.8) before 1 (0.6): recall@1 = 0,
    recall@5 = 1, AP = 1/2."""
    labels = [1 + i % 2 for i in range(1, 5)]  # make_coco's category ids 1 + i % 2 -> labels
    evaluator = detection_embedding_evaluator("det", None, dataset, None)
    predictions = [
        _prediction([GT, [8.0, 8.0, 16.0, 18.0]], [[1.0, 0.0], [0.0, 1.0]], [labels[0] - 1] * 2),
        _prediction([GT], [[0.6, 0.8]], [labels[1] - 1]),
        _prediction([GT], [[0.0, 1.0]], [labels[2] - 1]),
        _prediction([[12.0, 12.0, 20.0, 20.0]], [[1.0, 0.0]], [labels[3] - 1]),
    ]
    evaluator.reset()
    evaluator.process({"image_ids": torch.tensor([1, 2])}, predictions[:2])
    evaluator.process({"image_ids": torch.tensor([3, 4])}, predictions[2:])
    metrics = evaluator.evaluate()
    assert metrics["det/id_matched"] == 0.75
    assert metrics["det/id_auc"] == pytest.approx(0.5)
    assert metrics["det/id_recall@1"] == 0.0 and metrics["det/id_recall@5"] == 1.0
    assert metrics["det/id_mAP"] == pytest.approx(0.5)
    assert metrics["det/id_accuracy"] == pytest.approx(0.75)  # accept >= 0.6: TAR 1, TRR 1/2
    assert metrics["det/mAP50"] == pytest.approx(0.75, abs=0.01)  # 3 of 4 boxes found
    assert [r[:3] for r in evaluator.gather_identities()[0]] == [(1, 0, 0), (2, 0, 0), (3, 0, 1)]
    # 4 identity boxes (a, a, b, b), all of them, matched or not: gallery 2, 4 different pairs
    assert caplog.messages == [
        "det: a small validation set: recall@5 and recall@10 of a gallery of 2 images are 1.0 "
        "whatever the model; 4 different-identity pairs cannot resolve a false-accept rate of "
        "0.001 (it needs 1,000): tar@far1e-3 and tar@far1e-2 accept no different pair"
    ]


def test_too_few_matches_give_nan_auc_and_no_identities_is_an_error(tmp_path, dataset):
    assert math.isnan(identity_metrics([], 4)["id_auc"])
    assert identity_metrics([], 4)["id_matched"] == 0.0
    plain = CocoDataset(make_coco(tmp_path / "p"))
    with pytest.raises(DataError, match="need the annotations' 'identity' field"):
        detection_embedding_evaluator("det", None, plain, None)


def test_the_task_table_knows_the_head():
    spec = TASKS[FCOSEmbeddingHead.task]
    assert spec.labels == "instances" and spec.targets == ("boxes", "identities")
    assert spec.main_metric == "mAP" and "id_auc" in spec.progress_bar
