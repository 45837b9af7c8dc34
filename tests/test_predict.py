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
    records = json.loads(out.read_text())
    assert [r["file"].rsplit("/", 1)[-1] for r in records] == [
        "000001.png",
        "000002.png",
        "000003.png",
    ]
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
