"""`visionkit predict`: inputs, drawn images, predictions.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import visionkit
from visionkit.errors import DataError
from visionkit.predict import draw_predictions, expand_inputs, predict_files

CONFIG = {
    "model": {
        "backbone": {"name": "simple_cnn"},
        "heads": {"cls": {"name": "linear", "num_classes": 4}},
    }
}


def test_predict_files_writes_drawn_images_and_json(shapes_root, tmp_path):
    model = visionkit.create_model(CONFIG, label_names={"class": ["a", "b", "c", "d"]})
    images = shapes_root / "val" / "images"
    out = predict_files(
        model, [images / "000001.png", str(images / "00000[23].png")], tmp_path, progress=False
    )
    assert json.loads(out.read_text()) == []  # no box heads: an empty COCO results list
    records = json.loads((tmp_path / "images.json").read_text())
    assert [r["file_name"].rsplit("/", 1)[-1] for r in records] == [
        "000001.png",
        "000002.png",
        "000003.png",
    ]
    assert [r["id"] for r in records] == [1, 2, 3]
    assert all((r["height"], r["width"]) == (64, 64) for r in records)
    assert all(r["cls"]["name"] in "abcd" and 0 <= r["cls"]["score"] <= 1 for r in records)
    assert sorted(p.name for p in tmp_path.glob("*_pred.png")) == [
        "000001_pred.png",
        "000002_pred.png",
        "000003_pred.png",
    ]


def test_expand_inputs_reads_folders_and_reports_missing_paths(shapes_root, tmp_path):
    assert len(expand_inputs([shapes_root / "val" / "images"])) == 24
    with pytest.raises(DataError, match="inputs not found") as info:
        expand_inputs([tmp_path / "nope.png", shapes_root / "val" / "images" / "000001.png"])
    assert str(tmp_path / "nope.png") in str(info.value)


def test_draw_predictions_draws_boxes_in_their_place():
    image = np.zeros((40, 60, 3), np.uint8)
    prediction = {
        "det": {
            "boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
            "names": ["square"],
        }
    }
    drawn = draw_predictions(image, prediction)
    assert drawn.shape == image.shape
    assert drawn[15, 10].any() and drawn[25, 20].any()  # box edges coloured
    assert not drawn[21, 26].any() and not drawn[35, 50].any()  # inside and outside untouched


def test_coco_results_are_loadable_by_pycocotools_with_masks_as_rle(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from visionkit.predict import coco_results

    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 5:25, 10:30] = True
    masks[1, 0:10, 40:60] = True
    prediction = {
        "inst": {
            "boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0], [40.0, 0.0, 60.0, 10.0]]),
            "scores": torch.tensor([0.9, 0.4]),
            "labels": torch.tensor([1, 0]),
            "names": ["square", "circle"],
            "masks": masks,
        }
    }
    entries = coco_results(7, prediction, category_ids=[3, 42])
    assert [e["category_id"] for e in entries] == [42, 3]
    assert entries[0]["bbox"] == [10.0, 5.0, 20.0, 20.0]
    assert entries[0]["head"] == "inst" and entries[0]["name"] == "square"
    decoded = mask_utils.decode(
        {**entries[0]["segmentation"], "counts": entries[0]["segmentation"]["counts"].encode()}
    )
    assert (decoded.astype(bool) == masks[0].numpy()).all()
    gt = {
        "images": [{"id": 7, "width": 60, "height": 40, "file_name": "x.png"}],
        "annotations": [],
        "categories": [{"id": 3, "name": "circle"}, {"id": 42, "name": "square"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(entries))
    coco = COCO(str(tmp_path / "gt.json"))
    loaded = coco.loadRes(str(tmp_path / "dt.json"))
    assert len(loaded.getAnnIds()) == 2


def test_draw_predictions_fills_masks_and_adds_a_semantic_legend():
    image = np.zeros((40, 60, 3), np.uint8)
    semantic = torch.zeros(40, 60, dtype=torch.long)
    semantic[:, 30:] = 2
    prediction = {"seg": {"mask": semantic, "names": ["background", "circle", "square"]}}
    drawn = draw_predictions(image, prediction)
    assert drawn.shape[1] == 60 and drawn.shape[0] > 40  # legend strip below the image
    assert not drawn[20, 10].any()  # background left alone
    assert drawn[20, 45].any()  # class 2 filled
    instance = {
        "inst": {
            "boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]),
            "scores": torch.tensor([0.8]),
            "labels": torch.tensor([0]),
            "masks": torch.zeros(1, 40, 60, dtype=torch.bool).index_fill_(
                1, torch.arange(5, 15), True
            ),
        }
    }
    drawn = draw_predictions(image, instance)
    assert drawn.shape == image.shape
    assert drawn[10, 50].any()  # mask row 10 filled across the image
    assert not drawn[30, 50].any()
