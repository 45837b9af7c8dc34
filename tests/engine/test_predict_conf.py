"""The prediction threshold training keeps with the model (``meta["predict_conf"]``): each box
head's best-F1 score of its first validation set, restored with the weights of a checkpoint."""

from __future__ import annotations

import visionkit
from visionkit.engine.system import VisionSystem
from visionkit.evaluation.coco import CocoEvaluator


def detector_system() -> VisionSystem:
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {
                "det": {"name": "fcos", "num_classes": 2, "num_convs": 1},
                "cls": {"name": "linear", "num_classes": 2},
            },
        },
        "data": {"image_size": 64},
    }
    model = visionkit.create_model(config)
    sets = [
        {"det@a": CocoEvaluator("det/a", "a.json", [1, 2])},
        {"det@b": CocoEvaluator("det/b", "b.json", [1, 2])},
    ]
    return VisionSystem(model, evaluators=sets, val_sets=["a", "b"])


def test_the_first_validation_set_of_each_head_decides():
    system = detector_system()
    metrics = {"det/a/F1": 0.8, "det/a/F1_conf": 0.45, "det/b/F1": 0.9, "det/b/F1_conf": 0.6}
    system._keep_predict_conf(metrics)
    assert system.model.meta["predict_conf"] == {"det": 0.45}
    # the first set's boxes found nothing: no threshold kept, not the second set's
    system._keep_predict_conf({**metrics, "det/a/F1": 0.0, "det/a/F1_conf": float("nan")})
    assert "predict_conf" not in system.model.meta


def test_a_checkpoint_brings_back_its_own_threshold():
    """A resumed run, and best.ckpt validated again after training, predict with the
    threshold of the weights they load, not with that of the run's last validation."""
    system = detector_system()
    system.model.meta["predict_conf"] = {"det": 0.3}  # the last validation's
    system.on_load_checkpoint({"visionkit": {"predict_conf": {"det": 0.55}}})
    assert system.model.meta["predict_conf"] == {"det": 0.55}
    system.on_load_checkpoint({"visionkit": {"config": {}}})  # weights validated never
    assert "predict_conf" not in system.model.meta
