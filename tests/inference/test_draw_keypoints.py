"""Keypoint predictions are drawn as skeletons: points and the lines between them, visible
points only."""

from __future__ import annotations

import numpy as np
import torch

from visionkit.inference.draw import colour_of, draw_predictions


def test_skeleton_is_drawn_between_visible_points():
    image = np.zeros((40, 40, 3), np.uint8)
    result = {
        "boxes": torch.tensor([[2.0, 2.0, 38.0, 38.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
        "names": ["square"],
        "keypoints": torch.tensor([[[10.0, 20.0, 0.9], [30.0, 20.0, 0.8], [20.0, 33.0, 0.1]]]),
        "skeleton": [[1, 2], [1, 3]],
    }
    drawn = draw_predictions(image, {"pose": result})
    assert drawn[20, 20].any()  # on the line joining points 1 and 2, in the class colour
    assert tuple(drawn[20, 20]) == colour_of(1)  # torchvision drew it white
    assert drawn[20, 10].any() and drawn[20, 30].any()
    assert not drawn[33, 20].any()  # point 3 is not visible: neither it nor its line
    assert not drawn[27, 15].any()
