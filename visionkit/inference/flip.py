"""How each task merges a prediction with that of the mirrored image (flip test-time
augmentation); :data:`visionkit.evaluation.tasks.TASKS` names one merge per task.

Every merge takes one head's raw outputs for a batch and for its mirror image (made by
:func:`visionkit.inference.tta.hflip_images`), and returns one prediction per image, reusing
the head's own ``postprocess``:

- classification (:func:`merge_scores`): the class probabilities (``scores``) of both views are
  averaged; the head decodes the average (``label``, ``name``, ``score``, ``top5``).
- semantic (:func:`merge_dense_logits`): the flipped view's raw ``logits`` are mirrored back
  (each cell resampled at its mirrored centre: an exact column flip when the image width is a
  multiple of the logits' stride, as it always is when the image fills the batch tensor), the
  softmax probabilities of both views are averaged, and the head decodes
  ``log(mean probability)`` as usual.
- detection / instance / keypoints / detection with embeddings (:func:`merge_boxes`): the
  flipped view's detections (boxes and masks, already in original-image coordinates) are
  mirrored back, ``x' = W - x``, and merged with the others by class-wise NMS
  (``torchvision.ops.batched_nms`` at the head's ``nms_thresh``), keeping the head's
  ``detections_per_img``. A kept detection keeps what its view gave it: its ``keypoints``
  (those of the mirror view mirrored back as pixel indices, ``x' = W - 1 - x``, left and
  right exchanged by the head's ``keypoint_names``) and its ``embeddings``.
- embedding (:func:`merge_embeddings`): the two views'
  embeddings averaged and re-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from visionkit.data.readers.coco_keypoints import flip_index
from visionkit.models.heads.classification import class_results

Sizes = Sequence[tuple[int, int]]
#: Per-detection tensors that follow their detection through the merge.
PER_DETECTION = ("masks", "keypoints", "embeddings")


def hflip_back_map(maps: Tensor, image_sizes: Sizes, stride: float) -> Tensor:
    """Mirror dense maps ``[B, C, h, w]`` (e.g. logits at ``stride`` pixels per cell, top-left
    aligned with the batch tensor) back after :func:`~visionkit.inference.tta.hflip_images`:
    pixel ``x`` of image ``i`` (of width ``W_i``) came from ``W_i - x``. Cells are resampled
    bilinearly at their mirrored centres, which is an exact column flip when ``W_i`` is a
    multiple of ``stride``."""
    batch, _, h, w = maps.shape
    widths = maps.new_tensor([float(s[1]) for s in image_sizes])  # [B]
    centres = (torch.arange(w, device=maps.device, dtype=maps.dtype) + 0.5) * stride  # [w]
    source = (widths[:, None] - centres[None, :]) / stride  # [B, w] in cells
    grid_x = 2 * source / w - 1  # grid_sample, align_corners=False: -1 / 1 = outer edges
    grid_y = 2 * (torch.arange(h, device=maps.device, dtype=maps.dtype) + 0.5) / h - 1
    grid = torch.stack(
        [grid_x[:, None, :].expand(batch, h, w), grid_y[None, :, None].expand(batch, h, w)],
        dim=-1,
    )  # [B, h, w, 2] as (x, y)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)


def hflip_detections(
    prediction: dict[str, Any], width: int, keypoint_flip: Sequence[int] | None = None
) -> dict[str, Any]:
    """One image's detections (``boxes`` xyxy, optional ``masks`` ``[N, H, W]`` and
    ``keypoints`` ``[N, K, 3]``) mirrored in an image ``width`` pixels wide: ``x1' = W - x2``,
    ``x2' = W - x1``; keypoints (pixel indices, as albumentations flips them) ``x' = W - 1 -
    x``, point ``k`` becoming point ``keypoint_flip[k]`` (a left eye is a right eye in the
    mirror; :func:`visionkit.data.readers.coco_keypoints.flip_index`)."""
    out = dict(prediction)
    boxes = prediction["boxes"]
    out["boxes"] = torch.stack(
        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1
    )
    if prediction.get("masks") is not None:
        out["masks"] = prediction["masks"].flip(-1)
    if prediction.get("keypoints") is not None:
        points = prediction["keypoints"].clone()
        points[..., 0] = width - 1 - points[..., 0]
        if keypoint_flip is not None:
            points = points[:, torch.as_tensor(list(keypoint_flip), dtype=torch.long)]
        out["keypoints"] = points
    return out


def merge_detections(
    first: dict[str, Any], second: dict[str, Any], nms_thresh: float, max_detections: int
) -> dict[str, Any]:
    """The detections of two views of one image as one: class-wise NMS over both, best first,
    at most ``max_detections``."""
    boxes = torch.cat([first["boxes"].float(), second["boxes"].float()])
    scores = torch.cat([first["scores"].float(), second["scores"].float()])
    labels = torch.cat([first["labels"], second["labels"]])
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:max_detections]
    out = {**first, "boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    if first.get("names") is not None and second.get("names") is not None:
        names = list(first["names"]) + list(second["names"])
        out["names"] = [names[k] for k in keep.tolist()]
    for key in PER_DETECTION:
        if first.get(key) is not None and second.get(key) is not None:
            out[key] = torch.cat([first[key], second[key].to(first[key].dtype)])[keep]
    return out


def merge_scores(
    head: Any,
    outputs: dict[str, Tensor],
    flipped: dict[str, Tensor],
    sizes: Sizes,
    origs: Sizes | None,
) -> list[dict[str, Any]]:
    """Classification: each image's class probabilities averaged over both views, decoded
    by the head (label, score and top classes follow the average)."""
    probs = (outputs["logits"].float().softmax(1) + flipped["logits"].float().softmax(1)) / 2
    return class_results(probs, getattr(head, "class_names", None))


def merge_dense_logits(
    head: Any,
    outputs: dict[str, Tensor],
    flipped: dict[str, Tensor],
    sizes: Sizes,
    origs: Sizes | None,
) -> list[dict[str, Any]]:
    """Semantic segmentation: the mirror view's logits flipped back (at the head's
    ``output_stride``), softmax probabilities averaged, decoded by the head."""
    logits = outputs["logits"].float()
    back = hflip_back_map(flipped["logits"].float(), sizes, float(head.output_stride))
    probs = (logits.softmax(1) + back.softmax(1)) / 2
    merged = {**outputs, "logits": probs.clamp(min=1e-12).log()}
    return head.postprocess(merged, sizes, origs)


def merge_boxes(
    head: Any,
    outputs: dict[str, Tensor],
    flipped: dict[str, Tensor],
    sizes: Sizes,
    origs: Sizes | None,
) -> list[dict[str, Any]]:
    """Detection, instance segmentation, keypoints, detection with embeddings: the mirror
    view's detections flipped back (keypoints with their left / right exchanged) and merged
    with the others by class-wise NMS."""
    plain = head.postprocess(outputs, sizes, origs)
    mirror = head.postprocess(flipped, sizes, origs)
    widths = [s[1] for s in (origs or sizes)]
    nms = float(getattr(head, "nms_thresh", 0.5))
    top = int(getattr(head, "detections_per_img", 100))
    names = getattr(head, "keypoint_names", None)
    swap = flip_index(names) if names else None
    return [
        merge_detections(a, hflip_detections(b, w, swap), nms, top)
        for a, b, w in zip(plain, mirror, widths, strict=True)
    ]


def merge_embeddings(
    head: Any,
    outputs: dict[str, Tensor],
    flipped: dict[str, Tensor],
    sizes: Sizes,
    origs: Sizes | None = None,
) -> list[dict[str, Any]]:
    """Embedding: the two views' embeddings averaged and re-normalised."""
    merged = F.normalize(outputs["embedding"].float() + flipped["embedding"].float(), dim=1)
    return head.postprocess({"embedding": merged}, sizes, origs)
