"""What a reader of one's own gets told when its samples break the Sample contract: an image
that is not uint8 RGB, an image-level class outside the head's classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionkit.data.datasets import TransformedDataset
from visionkit.data.transforms import build_pipeline
from visionkit.errors import SampleError
from visionkit.models.heads import ClassificationHead


def sample(image) -> dict:
    return {"image": image, "image_id": 7, "orig_size": (8, 8), "path": "mine/7.png", "class": 1}


@pytest.mark.parametrize(
    ("image", "got"),
    [
        (np.full((8, 8, 3), 0.5, np.float32), "float32 [8, 8, 3]"),  # 0..1 floats
        (np.zeros((3, 8, 8), np.uint8), "uint8 [3, 8, 8]"),  # CHW
        (np.zeros((8, 8), np.uint8), "uint8 [8, 8]"),  # grey without channels
    ],
)
def test_an_image_that_is_not_uint8_rgb_is_refused_naming_the_sample(image, got):
    """0..1 floats trained on a near-constant input after Normalize, and failed only after
    training, in the validation pictures ("predict expects uint8 RGB arrays")."""
    steps = [{"name": "Resize", "height": 8, "width": 8}]
    pipeline = build_pipeline(steps, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), where="t")
    dataset = TransformedDataset([sample(image)], pipeline)
    with pytest.raises(SampleError) as info:
        dataset[0]
    message = str(info.value)
    assert message.startswith("sample 0 (image id 7, mine/7.png): transform failed: ")
    assert f"the sample's image is {got}; expected a uint8 [H, W, 3] RGB array" in message


def test_an_image_class_outside_the_heads_classes_names_the_images():
    """``IndexError: Target 5 is out of bounds.`` named neither the value's meaning nor the
    image."""
    head = ClassificationHead(in_channels=[8], num_classes=3)
    outputs = head([torch.randn(2, 8, 4, 4)])
    targets = {"class": torch.tensor([1, 5]), "image_ids": torch.tensor([10, 11])}
    with pytest.raises(SampleError) as info:
        head.loss(outputs, targets)
    assert str(info.value) == (
        "image-level classes [5] of image ids [11] are not classes 0..2 (num_classes 3) nor -1 "
        "(no class); check the dataset's class indices"
    )
    targets["class"] = torch.tensor([1, -1])  # no class: ignored
    assert torch.isfinite(head.loss(outputs, targets)["ce"])
