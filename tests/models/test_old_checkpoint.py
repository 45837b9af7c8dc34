"""A checkpoint written by visionkit 0.1.0, before the restructuring, still loads with
``visionkit.load`` and predicts what it predicted then (tests/fixtures/make_checkpoint_v0_1_0.py
made it; checkpoint_v0_1_0_expected.json holds its predictions on the seeded image below)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import visionkit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CHECKPOINT = FIXTURES / "checkpoint_v0_1_0.ckpt"


def seeded_image() -> np.ndarray:
    return (np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8")


def test_its_config_uses_the_names_and_arguments_of_0_1_0():
    meta = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["visionkit"]
    heads = meta["config"]["model"]["heads"]
    assert {k: v["name"] for k, v in heads.items()} == {
        "cls": "linear",
        "det": "fcos",
        "seg": "semantic_fpn",
    }
    assert meta["config"]["model"]["neck"]["name"] == "fpn"
    assert "focal_alpha" not in heads["det"]  # a key added since: its default fills it


def test_loads_and_predicts_as_it_did():
    expected = json.loads((FIXTURES / "checkpoint_v0_1_0_expected.json").read_text())
    model = visionkit.load(CHECKPOINT)
    assert model.heads["det"].focal_alpha == 0.25 and model.heads["det"].focal_gamma == 2.0
    # 0.1.0 predicted at the head's score_thresh (0.05); it keeps no threshold of its own
    assert "predict_conf" not in model.meta
    prediction = model.predict([seeded_image()], conf=0.05)[0]

    scores = prediction["cls"]["scores"]
    np.testing.assert_allclose(scores.numpy(), expected["cls_scores"], rtol=0, atol=1e-5)

    det = prediction["det"]
    count = len(expected["det_boxes"])
    np.testing.assert_allclose(
        det["boxes"][:count].numpy(), expected["det_boxes"], rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        det["scores"][:count].numpy(), expected["det_scores"], rtol=0, atol=1e-5
    )
    assert det["labels"][:count].tolist() == expected["det_labels"]

    mask = prediction["seg"]["mask"]
    assert int(mask.sum()) == expected["seg_mask_sum"]
    hist = torch.bincount(mask.flatten(), minlength=len(expected["seg_hist"]))
    assert hist.tolist() == expected["seg_hist"]
