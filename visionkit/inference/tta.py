"""Test-time augmentation: horizontal flip, for every kind of head.

The model runs twice, on the batch and on its mirror image, and the two results are merged per
head task, reusing each head's own ``postprocess``:

- ``classification``: the class probabilities (``scores``) of both views are averaged;
  ``label`` and ``name`` follow the average.
- ``semantic``: the flipped view's raw ``logits`` are mirrored back (each cell resampled at its
  mirrored centre: an exact column flip when the image width is a multiple of the logits'
  stride, as it always is when the image fills the batch tensor), the softmax probabilities of
  both views are averaged, and the head decodes ``log(mean probability)`` as usual.
- ``detection`` / ``instance``: the flipped view's detections (boxes and masks, already in
  original-image coordinates) are mirrored back, ``x' = W - x``, and merged with the others by
  class-wise NMS (``torchvision.ops.batched_nms`` at the head's ``nms_thresh``), keeping the
  head's ``detections_per_img``.

Images are mirrored inside their own region of the batch tensor, so padding stays at the
bottom/right, where every head's ``postprocess`` expects it.

>>> import numpy as np, visionkit
>>> model = visionkit.create_model({"model": {"backbone": {"name": "simple_cnn"},
...     "heads": {"cls": {"name": "linear", "num_classes": 3}}}})
>>> (pred,) = predict_hflip(model, [np.zeros((40, 60, 3), np.uint8)])
>>> pred["cls"]["scores"].shape
torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from visionkit.models.model import VisionModel

TTA_MODES = ("flip",)
Sizes = Sequence[tuple[int, int]]


def hflip_images(images: Tensor, image_sizes: Sizes) -> Tensor:
    """Mirror each image ``[3, H, W]`` of a padded batch ``[B, 3, Hp, Wp]`` left-right inside
    its own ``image_sizes[i]`` (H, W) region; the padding stays at the bottom/right."""
    if all(tuple(s) == tuple(images.shape[-2:]) for s in image_sizes):
        return images.flip(-1)
    flipped = images.clone()
    for i, (h, w) in enumerate(image_sizes):
        flipped[i, :, :h, :w] = images[i, :, :h, :w].flip(-1)
    return flipped


def hflip_back_map(maps: Tensor, image_sizes: Sizes, stride: float) -> Tensor:
    """Mirror dense maps ``[B, C, h, w]`` (e.g. logits at ``stride`` pixels per cell, top-left
    aligned with the batch tensor) back after :func:`hflip_images`: pixel ``x`` of image ``i``
    (of width ``W_i``) came from ``W_i - x``. Cells are resampled bilinearly at their mirrored
    centres, which is an exact column flip when ``W_i`` is a multiple of ``stride``."""
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


def hflip_detections(prediction: dict[str, Any], width: int) -> dict[str, Any]:
    """One image's detections (``boxes`` xyxy, optional ``masks`` ``[K, H, W]``) mirrored in an
    image ``width`` pixels wide: ``x1' = W - x2``, ``x2' = W - x1``."""
    out = dict(prediction)
    boxes = prediction["boxes"]
    out["boxes"] = torch.stack(
        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1
    )
    if prediction.get("masks") is not None:
        out["masks"] = prediction["masks"].flip(-1)
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
    if first.get("masks") is not None and second.get("masks") is not None:
        out["masks"] = torch.cat([first["masks"], second["masks"]])[keep]
    return out


def merge_hflip(
    model: VisionModel,
    outputs: Mapping[str, dict[str, Tensor]],
    flipped_outputs: Mapping[str, dict[str, Tensor]],
    image_sizes: Sizes,
    orig_sizes: Sizes | None = None,
) -> list[dict[str, Any]]:
    """Merge the raw outputs of a batch and of its :func:`hflip_images` mirror into one
    prediction per image (the same structure as :meth:`VisionModel.postprocess`).

    Args:
        model: the model that produced both outputs.
        outputs, flipped_outputs: :meth:`VisionModel.forward` of the batch and of its mirror.
        image_sizes: (H, W) of each image inside the batch tensor.
        orig_sizes: (H, W) of the original images (``None``: the batch tensor's frame).

    Raises:
        ValueError: a head's ``task`` is none of classification, semantic, detection, instance.
    """
    sizes = [tuple(int(v) for v in s) for s in image_sizes]
    origs = [tuple(int(v) for v in s) for s in orig_sizes] if orig_sizes is not None else None
    per_head: dict[str, list[dict[str, Any]]] = {}
    for name, head in model.heads.items():
        task = getattr(head, "task", None)
        if task == "classification":
            plain = head.postprocess(outputs[name], sizes, origs)
            mirror = head.postprocess(flipped_outputs[name], sizes, origs)
            per_head[name] = [
                _average_scores(a, b, head) for a, b in zip(plain, mirror, strict=True)
            ]
        elif task == "semantic":
            logits = outputs[name]["logits"].float()
            back = hflip_back_map(
                flipped_outputs[name]["logits"].float(), sizes, float(head.output_stride)
            )
            probs = (logits.softmax(1) + back.softmax(1)) / 2
            merged = {**outputs[name], "logits": probs.clamp(min=1e-12).log()}
            per_head[name] = head.postprocess(merged, sizes, origs)
        elif task in ("detection", "instance"):
            plain = head.postprocess(outputs[name], sizes, origs)
            mirror = head.postprocess(flipped_outputs[name], sizes, origs)
            widths = [s[1] for s in (origs or sizes)]
            nms = float(getattr(head, "nms_thresh", 0.5))
            top = int(getattr(head, "detections_per_img", 100))
            per_head[name] = [
                merge_detections(a, hflip_detections(b, w), nms, top)
                for a, b, w in zip(plain, mirror, widths, strict=True)
            ]
        else:
            raise ValueError(
                f"flip test-time augmentation does not know how to merge the predictions of "
                f"head {name!r} (task {task!r}); it supports classification, semantic, "
                "detection and instance heads"
            )
    return [{name: preds[i] for name, preds in per_head.items()} for i in range(len(sizes))]


@torch.inference_mode()
def predict_hflip(
    model: VisionModel, images: Sequence[np.ndarray], batch_size: int = 16
) -> list[dict[str, Any]]:
    """:meth:`VisionModel.predict` with horizontal-flip test-time augmentation: each batch of
    ``H×W×3 uint8`` RGB images goes through the model's evaluation pipeline, then the model
    runs on it and on its mirror, and :func:`merge_hflip` merges the two."""
    from visionkit.data.transforms import collate
    from visionkit.models.model import _as_rgb_uint8

    if model.preprocess is None:
        raise RuntimeError("this model has no preprocess pipeline; it cannot take raw images")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    results: list[dict[str, Any]] = []
    try:
        for start in range(0, len(images), batch_size):
            chunk = [
                model.preprocess(_as_rgb_uint8(im)) for im in images[start : start + batch_size]
            ]
            batch = collate(chunk)
            x = batch["images"].to(device)
            sizes = [tuple(s) for s in batch["image_sizes"].tolist()]
            origs = [tuple(s) for s in batch["orig_sizes"].tolist()]
            results += merge_hflip(model, model(x), model(hflip_images(x, sizes)), sizes, origs)
    finally:
        model.train(was_training)
    return results


def predict_tta(
    model: VisionModel, images: Sequence[np.ndarray], tta: str | None, batch_size: int = 16
) -> list[dict[str, Any]]:
    """``model.predict(images)`` with the test-time augmentation ``tta`` (``None`` or one of
    :data:`TTA_MODES`)."""
    if tta is None:
        return model.predict(images, batch_size=batch_size)
    if tta == "flip":
        return predict_hflip(model, images, batch_size=batch_size)
    raise ValueError(f"unknown test-time augmentation {tta!r}; valid: {', '.join(TTA_MODES)}")


def _average_scores(first: dict[str, Any], second: dict[str, Any], head: Any) -> dict[str, Any]:
    scores = (first["scores"].float() + second["scores"].float()) / 2
    label = int(scores.argmax())
    names = getattr(head, "class_names", None)
    return {**first, "scores": scores, "label": label, "name": names[label] if names else None}
