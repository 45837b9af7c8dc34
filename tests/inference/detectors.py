"""A tiny untrained detector whose scores spread over 0.1-0.65 (so thresholds change what is
kept), saved as a checkpoint that ``visionkit.load`` and ``visionkit predict`` read; a fake
webcam for ``cv2.VideoCapture(int)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import visionkit
from visionkit.models.weights import LIGHTNING_PREFIX

CLASSES = ["circle", "square", "triangle"]


def detector() -> visionkit.VisionModel:
    """simple_cnn → FPN → FCOS (3 classes, 64 px); classifier weights spread so that an image
    gets about 100 detections above 0.45 and 25 above 0.55."""
    torch.manual_seed(0)
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"det": {"name": "fcos", "num_classes": 3, "num_convs": 1}},
        },
        "data": {"image_size": 64},
    }
    model = visionkit.create_model(config, label_names={"instances": CLASSES})
    head = model.heads["det"]
    torch.nn.init.normal_(head.cls_logits.weight, std=0.15)
    torch.nn.init.constant_(head.cls_logits.bias, -1.0)
    torch.nn.init.constant_(head.centerness.bias, 0.0)
    model.meta["category_ids"] = [3, 7, 42]
    return model.eval()


def save_checkpoint(model: visionkit.VisionModel, path: Path) -> Path:
    """``model`` as a checkpoint in the layout ``visionkit train`` writes (the state dict
    under the Lightning prefix, the metadata under ``visionkit``)."""
    state = {LIGHTNING_PREFIX + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "visionkit": model.meta}, path)
    return path


def photo(seed: int = 0, size: tuple[int, int] = (48, 80)) -> np.ndarray:
    """A random ``H×W×3 uint8`` RGB image."""
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


class FakeWebcam:
    """Stands in for ``cv2.VideoCapture(index)``: BGR frames of :func:`photo`, endless unless
    ``frames`` is given; ``interrupt_at``: the read that raises ``KeyboardInterrupt`` (Ctrl-C)."""

    opened: list[int] = []

    def __init__(self, index: int, frames: int | None = None, interrupt_at: int | None = None):
        self.index, self.frames, self.interrupt_at = index, frames, interrupt_at
        self.reads = 0
        FakeWebcam.opened.append(index)

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.index == 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if self.interrupt_at is not None and self.reads >= self.interrupt_at:
            raise KeyboardInterrupt
        if self.frames is not None and self.reads > self.frames:
            return False, None
        return True, photo(self.reads)[:, :, ::-1].copy()

    def grab(self) -> bool:
        ok, _ = self.read()
        return ok

    def get(self, prop: int) -> float:
        import cv2

        return 30.0 if prop == cv2.CAP_PROP_FPS else -1.0

    def release(self) -> None:
        pass
