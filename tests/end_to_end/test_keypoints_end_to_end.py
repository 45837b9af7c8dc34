"""Keypoints end to end: simple_cnn → FPN → fcos_keypoints on tiny shapes with keypoints; the
loss falls, the OKS metrics exist, and a reloaded model predicts keypoints."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import visionkit
from visionkit.cli import main
from visionkit.data.io import read_image
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.synthetic import make_shapes
from visionkit.engine.pictures import ground_truth
from visionkit.engine.runner import evaluate, train


@pytest.fixture(scope="module")
def keypoint_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_kp")
    make_shapes(root / "train", num_images=24, size=64, seed=0, keypoints=True)
    make_shapes(root / "val", num_images=8, size=64, seed=1, keypoints=True)
    return root


def test_keypoints_train_evaluate_and_predict(keypoint_shapes, tmp_path, capsys):
    head = {  # num_keypoints, keypoint_names: the data's
        "name": "fcos_keypoints",
        "num_convs": 1,
        "kpt_convs": 1,
        "skeleton": [[1, 2], [1, 3], [1, 4], [1, 5]],
    }
    config = {
        "name": "kp",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
            "heads": {"pose": head},
        },
        "data": {
            "train": {"format": "coco", "images": str(keypoint_shapes / "train")},
            "val": {"format": "coco", "images": str(keypoint_shapes / "val")},
            "image_size": 64,
            "batch_size": 8,
            "num_workers": 0,
            "transforms": {
                "train": [{"name": "HorizontalFlip", "p": 0.5}],
                "val": [{"name": "Resize"}],
            },
        },
        "optimizer": {"name": "adamw", "lr": 0.003},
        "trainer": {
            "max_epochs": 3,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }
    run_dir, metrics = train(config)
    assert {f"pose/kpt_{k}" for k in ("mAP", "mAP50", "AR")} <= set(metrics)
    # pycocotools scored keypoints (a NaN would mean no ground truth reached it); after a few
    # steps the values are small and thread-count dependent, so only their range is checked
    # (tests/evaluation/test_keypoints_evaluator.py checks them against pycocotools by hand)
    assert all(0 <= metrics[f"pose/kpt_{k}"] <= 1 for k in ("mAP", "mAP50", "AR", "AR50"))
    assert "pose/mAP" in metrics  # the boxes are scored too
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert losses[-1] < losses[0], losses

    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    (pred,) = model.predict([read_image(keypoint_shapes / "val" / "images" / "000001.png")])
    pose = pred["pose"]
    assert pose["keypoints"].shape[1:] == (5, 3)
    assert len(pose["keypoints"]) == len(pose["boxes"])
    assert pose["skeleton"] == ((1, 2), (1, 3), (1, 4), (1, 5))
    assert list(pose["keypoint_names"]) == ["center", "left", "top", "right", "bottom"]  # data's
    sample = CocoDataset(keypoint_shapes / "val", keypoints=True)[0]
    truth = ground_truth(model, sample)["pose"]  # what show-data and val pictures draw
    assert truth["keypoints"].shape == (len(sample["boxes"]), 5, 3)
    assert truth["skeleton"] == [[1, 2], [1, 3], [1, 4], [1, 5]]

    # eval --save-predictions writes the keypoint results the OKS metric scored, beside the
    # boxes': pycocotools run on them by hand gives the same kpt mAP
    saved = tmp_path / "preds.json"
    scored = evaluate(run_dir / "checkpoints" / "best.ckpt", save_predictions=saved)
    results = json.loads((tmp_path / "preds_keypoints.json").read_text())
    assert results and all(len(r["keypoints"]) == 15 for r in results)
    truth = COCO(str(keypoint_shapes / "val" / "annotations.json"))
    by_hand = COCOeval(truth, truth.loadRes(results), iouType="keypoints")
    by_hand.params.kpt_oks_sigmas = np.asarray(model.heads["pose"].kpt_oks_sigmas)
    by_hand.evaluate(), by_hand.accumulate(), by_hand.summarize()
    assert by_hand.stats[0] == pytest.approx(scored["pose/kpt_mAP"], abs=1e-12)
    assert (
        main(["eval", "--checkpoint", str(run_dir / "checkpoints" / "best.ckpt"), "--no-plots"])
        == 0
    )
    out = capsys.readouterr().out  # the keypoint summary is printed as the boxes' is
    assert "COCO keypoints summary of `pose` (pycocotools COCOeval.summarize)" in out


def test_eval_scores_keypoints_with_the_oks_sigmas_given_on_the_command_line(
    keypoint_shapes, tmp_path
):
    """A checkpoint trained with the default sigmas (0.0669 each) could be scored with others
    (Ultralytics' 1 / K, a data.yaml's) only by pycocotools by hand: eval refused every model.*
    override. model.heads.<head>.kpt_oks_sigmas is taken, checked, and gives pycocotools' number
    with those sigmas."""
    from visionkit.errors import ConfigError

    config = {
        "name": "kp",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"pose": {"name": "fcos_keypoints", "num_convs": 1, "kpt_convs": 1}},
        },
        "data": {
            "train": {"format": "coco", "images": str(keypoint_shapes / "train")},
            "val": {"format": "coco", "images": str(keypoint_shapes / "val")},
            "image_size": 64,
            "batch_size": 8,
            "num_workers": 0,
        },
        "trainer": {"max_steps": 2, "accelerator": "cpu", "enable_progress_bar": False},
    }
    run_dir, _ = train(config)
    best = run_dir / "checkpoints" / "best.ckpt"
    saved = tmp_path / "preds.json"
    scored = evaluate(
        best, ["model.heads.pose.kpt_oks_sigmas=[0.2,0.2,0.2,0.2,0.2]"], save_predictions=saved
    )
    results = json.loads((tmp_path / "preds_keypoints.json").read_text())
    truth = COCO(str(keypoint_shapes / "val" / "annotations.json"))
    by_hand = COCOeval(truth, truth.loadRes(results), iouType="keypoints")
    by_hand.params.kpt_oks_sigmas = np.array([0.2] * 5)
    by_hand.evaluate(), by_hand.accumulate(), by_hand.summarize()
    assert by_hand.stats[0] == pytest.approx(scored["pose/kpt_mAP"], abs=1e-12)
    assert by_hand.stats[0] > evaluate(best)["pose/kpt_mAP"]  # looser than 0.0669 each
    with pytest.raises(ConfigError, match=r"\[0.2\]; expected 5 positive numbers, one per"):
        evaluate(best, ["model.heads.pose.kpt_oks_sigmas=[0.2]"])
    with pytest.raises(ConfigError, match="model.heads.<keypoint head>.kpt_oks_sigmas overrides"):
        evaluate(best, ["model.heads.pose.num_keypoints=3"])
    with pytest.raises(ConfigError, match=r"kpt_oks_sigmas\[1\]: expected a valid number"):
        evaluate(best, ["model.heads.pose.kpt_oks_sigmas=[0.2,x]"])
    model = visionkit.load(best)  # a model in memory is scored with them once, not changed
    assert evaluate(model, ["model.heads.pose.kpt_oks_sigmas=[0.2,0.2,0.2,0.2,0.2]"]) == scored
    assert model.heads["pose"].kpt_oks_sigmas == pytest.approx([0.0669] * 5, abs=1e-4)
    assert evaluate(model)["pose/kpt_mAP"] == evaluate(best)["pose/kpt_mAP"]
