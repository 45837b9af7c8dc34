"""Keypoint predictions drawn as skeletons (torchvision's ``draw_keypoints``): the points of
each object and the ``skeleton`` lines between them, in the object's class colour. A
keypoint whose visibility is below :data:`VISIBLE` (a predicted probability, or a COCO
visibility 0) is left out, and so are its lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import draw_keypoints

VISIBLE = 0.5  # smallest visibility drawn (predicted probability; ground truth: v = 1 or 2)


def draw_skeletons(
    canvas: torch.Tensor,
    result: dict[str, Any],
    colour_of: Callable[[int], tuple[int, int, int]],
    line: int = 2,
) -> torch.Tensor:
    """``canvas`` (uint8 ``[3, H, W]``) with ``result["keypoints"]`` (``[N, K, 3]``: x, y,
    visibility) drawn, joined by ``result["skeleton"]`` (1-based pairs, COCO's), in lines and
    points of ``line`` pixels."""
    points = result["keypoints"].float().cpu()
    if not len(points):
        return canvas
    pairs = [(int(a) - 1, int(b) - 1) for a, b in result.get("skeleton") or []]
    if pairs:  # torchvision draws the lines white whatever the colour: drawn here
        picture = Image.fromarray(canvas.permute(1, 2, 0).numpy())
        pen = ImageDraw.Draw(picture)
        for keypoints, label in zip(points, result["labels"], strict=True):
            for a, b in pairs:
                if min(keypoints[a, 2], keypoints[b, 2]) >= VISIBLE:
                    ends = [tuple(keypoints[k, :2].tolist()) for k in (a, b)]
                    pen.line(ends, fill=colour_of(int(label)), width=line)
        canvas = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).contiguous()
    for keypoints, label in zip(points, result["labels"], strict=True):
        canvas = draw_keypoints(
            canvas,
            keypoints[None, :, :2],
            colors=colour_of(int(label)),
            radius=line,
            visibility=(keypoints[None, :, 2] >= VISIBLE),
        )
    return canvas
