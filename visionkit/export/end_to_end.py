"""End-to-end ONNX (``visionkit export --format onnx --nms``): decoding, score threshold and NMS
inside the graph, so that onnxruntime alone gives final predictions.

The graph (:class:`EndToEndModule`) takes two inputs:

- ``images`` float32 ``[B, 3, H, W]``, normalised, any ``H`` and ``W`` (as for the raw export,
  the file pads them to multiples of 32: :mod:`~visionkit.export.input_padding`);
- ``image_sizes`` int64 ``[B, 2]``: ``(h, w)`` of each image inside the padded batch (images
  sit top-left, padded with zeros at the bottom/right). Boxes are clipped to it; pass
  ``[[H, W]] * B`` for an unpadded batch.

and returns, per head (``<head>.<key>``, in head order):

- detection heads (``fcos``, ``retinanet``; ``fcos_mask`` gives its boxes only, no masks):
  ``boxes`` float32 ``[N, 4]`` xyxy in the pixels of ``images``, ``scores`` float32 ``[N]``,
  ``labels`` int64 ``[N]``, ``batch_index`` int64 ``[N]`` (which image of the batch): the
  detections of every image, image by image, each image's by descending score;
- keypoint heads (``fcos_keypoints``, kind ``"keypoints"``): the detection outputs, then
  ``keypoints`` float32 ``[N, K, 3]`` of the same detections in the same order: x, y in the
  pixels of ``images`` (the detection's point plus its offset) and the visibility
  probability (sigmoid of its logit), as the head's ``postprocess`` without ``orig_sizes``;
- detection + embedding heads (``fcos_embedding``, kind ``"detection_embedding"``): the
  detection outputs, then ``embeddings`` float32 ``[N, D]`` (each detection's point's unit
  vector);
- classification heads (``linear``, ``mlp``): ``scores`` float32 ``[B, C]`` (softmax);
- embedding heads (``embedding``): ``embedding`` float32 ``[B, D]``, each image's unit vector;
- semantic heads (``semantic_fpn``, ``deeplabv3plus``): ``mask`` ``[B, H, W]`` (uint8 for up
  to 256 classes, else int64), the argmax of the logits upsampled bilinearly to the padded
  batch, cut back to the input's ``H × W`` in the file (:data:`PIXEL_KEYS`).

The detection decode is the heads' own ``postprocess`` written with batched tensor ops: the
best ``topk_candidates`` (point or anchor, class) pairs per level, those above ``conf``,
boxes decoded and clipped to ``image_sizes``, boxes under 0.01 px dropped, class-wise NMS at
``iou`` (one ``torchvision.ops.nms`` → ONNX ``NonMaxSuppression`` over the whole batch: each
image's and class's boxes are shifted apart so that they never overlap), then the best
``max_det`` per image. Each detection's location (point or anchor) index is carried through
these steps (:func:`detect_with_locations`), so that per-location outputs (keypoints,
embeddings) are gathered for exactly the kept detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from visionkit.errors import ExportError
from visionkit.models.heads._utils import off_the_padding
from visionkit.models.heads.classification import ClassificationHead
from visionkit.models.heads.embedding import EmbeddingHead
from visionkit.models.heads.fcos import FCOSHead
from visionkit.models.heads.fcos_embedding import FCOSEmbeddingHead
from visionkit.models.heads.keypoints import FCOSKeypointsHead
from visionkit.models.heads.retinanet import RetinaNetHead, decode_boxes
from visionkit.models.model import VisionModel

SIZES_NAME = "image_sizes"
MIN_BOX_SIZE = 1e-2  # as select_detections' remove_small_boxes
DETECTION_KEYS = ("boxes", "scores", "labels", "batch_index")
#: Outputs at the pixels of ``images`` (``[B, H, W]``), cut back to the input's size where the
#: graph pads it (:func:`~visionkit.export.input_padding.pad_input`).
PIXEL_KEYS = ("mask",)
#: The kinds whose graph runs :func:`detect` (and bakes in :class:`NmsSettings`).
DETECTION_KINDS = ("detection", "keypoints", "detection_embedding")
OUTPUT_KEYS = {
    "detection": DETECTION_KEYS,
    "keypoints": (*DETECTION_KEYS, "keypoints"),
    "detection_embedding": (*DETECTION_KEYS, "embeddings"),
    "classification": ("scores",),
    "embedding": ("embedding",),
    "semantic": ("mask",),
}


@dataclass(frozen=True)
class NmsSettings:
    """What a detection head keeps (``None``: the head's own ``score_thresh``,
    ``nms_thresh``, ``detections_per_img``); ``conf`` is one threshold, or one per head name
    (:func:`visionkit.export.export` bakes in :func:`~visionkit.inference.options.
    prediction_conf` when none is given: what ``visionkit predict`` keeps)."""

    conf: float | Mapping[str, float] | None = None
    iou: float | None = None
    max_det: int | None = None

    def check(self) -> None:
        """Raise :class:`ExportError` on a value out of range."""
        confs = self.conf.values() if isinstance(self.conf, Mapping) else [self.conf]
        for conf in confs:
            if conf is not None and not 0.0 <= conf < 1.0:
                raise ExportError(f"--conf must lie in [0, 1), got {conf}")
        if self.iou is not None and not 0.0 < self.iou <= 1.0:
            raise ExportError(f"--iou must lie in (0, 1], got {self.iou}")
        if self.max_det is not None and self.max_det < 1:
            raise ExportError(f"--max-det must be >= 1, got {self.max_det}")

    def of(self, name: str, head: nn.Module) -> dict[str, Any]:
        """The settings baked in for ``head`` (named ``name``): these values, else the head's
        own."""
        conf = self.conf.get(name) if isinstance(self.conf, Mapping) else self.conf
        return {
            "conf": float(head.score_thresh if conf is None else conf),
            "iou": float(head.nms_thresh if self.iou is None else self.iou),
            "max_det": int(head.detections_per_img if self.max_det is None else self.max_det),
            "topk_candidates": int(head.topk_candidates),
        }


def head_kind(name: str, head: nn.Module) -> str:
    """``"detection"``, ``"keypoints"``, ``"detection_embedding"``, ``"classification"``,
    ``"embedding"`` or ``"semantic"``; :class:`ExportError` for a head with no end-to-end
    export."""
    if isinstance(head, FCOSKeypointsHead):
        return "keypoints"
    if isinstance(head, FCOSEmbeddingHead):
        return "detection_embedding"
    if isinstance(head, (FCOSHead, RetinaNetHead)):
        return "detection"
    if isinstance(head, ClassificationHead):
        return "classification"
    if isinstance(head, EmbeddingHead):
        return "embedding"
    if getattr(head, "task", None) == "semantic" and hasattr(head, "output_stride"):
        return "semantic"
    raise ExportError(
        f"head {name!r} ({type(head).__name__}, task {getattr(head, 'task', None)!r}) has no "
        "end-to-end ONNX export (--nms: fcos, fcos_mask, fcos_keypoints, fcos_embedding, "
        "retinanet, linear, mlp, embedding, semantic_fpn, deeplabv3plus); export it without "
        "--nms (raw outputs, decoded by OnnxPredictor)"
    )


def output_keys(kind: str) -> tuple[str, ...]:
    """The outputs of a head of ``kind``."""
    return OUTPUT_KEYS[kind]


def mask_dtype(head: nn.Module) -> torch.dtype:
    """uint8 label maps for up to 256 classes, int64 above."""
    return torch.uint8 if int(head.num_classes) <= 256 else torch.int64


def output_layout(model: VisionModel, settings: NmsSettings) -> list[dict[str, Any]]:
    """Name, head, key, shape and dtype of every output (the ``end_to_end`` metadata)."""
    layout = []
    for name, head in model.heads.items():
        kind = head_kind(name, head)
        shapes = {
            "boxes": (["N", 4], "float32"),
            "scores": (["N"], "float32")
            if kind in DETECTION_KINDS
            else (["B", int(getattr(head, "num_classes", 0))], "float32"),
            "labels": (["N"], "int64"),
            "batch_index": (["N"], "int64"),
            "mask": (["B", "H", "W"], str(mask_dtype(head)).removeprefix("torch.")),
            "keypoints": (["N", int(getattr(head, "num_keypoints", 0)), 3], "float32"),
            "embeddings": (["N", int(getattr(head, "embedding_dim", 0))], "float32"),
            "embedding": (["B", int(getattr(head, "embedding_dim", 0))], "float32"),
        }
        for key in output_keys(kind):
            shape, dtype = shapes[key]
            layout.append(
                {"name": f"{name}.{key}", "head": name, "key": key, "shape": shape, "dtype": dtype}
            )
    return layout


def _dense_scores(
    head: nn.Module, raw: Mapping[str, Tensor], image_sizes: Tensor
) -> tuple[Tensor, Tensor]:
    """Per (location, class) scores ``[B, P, C]``, 0 on each image's padding (as the heads'
    ``postprocess``: :func:`~visionkit.models.heads._utils.off_the_padding`), and each
    location's stride ``[P]``."""
    if isinstance(head, FCOSHead):
        scores = (
            raw["cls_logits"].float().sigmoid() * raw["centerness"].float().sigmoid()[..., None]
        ).sqrt()
        return off_the_padding(scores, raw["points"].float(), image_sizes), raw["point_strides"]
    anchors = raw["anchors"].float()
    scores = off_the_padding(
        raw["cls_logits"].float().sigmoid(), (anchors[:, :2] + anchors[:, 2:]) / 2, image_sizes
    )
    return scores, raw["anchor_strides"]


def _decode(head: nn.Module, raw: Mapping[str, Tensor], location: Tensor) -> Tensor:
    """xyxy boxes ``[B, K, 4]`` of the locations ``[B, K]``."""
    regression = raw["bbox_regression"].float()
    deltas = torch.gather(regression, 1, location.unsqueeze(-1).expand(-1, -1, 4))
    if isinstance(head, FCOSHead):
        points = raw["points"].float()[location]  # [B, K, 2]
        return torch.cat([points - deltas[..., :2], points + deltas[..., 2:]], dim=-1)
    return decode_boxes(deltas, raw["anchors"].float()[location])


def detect(
    head: nn.Module,
    raw: Mapping[str, Tensor],
    image_sizes: Tensor,
    padded: Sequence[Any],
    settings: Mapping[str, Any],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``boxes [N, 4]``, ``scores [N]``, ``labels [N]``, ``batch_index [N]`` of a batch (see the
    module's docstring); ``padded`` is ``(H, W)`` of the batch tensor."""
    return detect_with_locations(head, raw, image_sizes, padded, settings)[:4]


def detect_with_locations(
    head: nn.Module,
    raw: Mapping[str, Tensor],
    image_sizes: Tensor,
    padded: Sequence[Any],
    settings: Mapping[str, Any],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`detect`'s four outputs and int64 ``location [N]``: the index (into the head's
    ``P`` points or anchors) of the location that produced each detection, carried through
    the score filter, NMS and the ``max_det`` selection, so that ``raw[key][batch_index,
    location]`` is a detection's per-location output."""
    scores, strides = _dense_scores(head, raw, image_sizes)
    batch, locations, num_classes = scores.shape
    k = settings["topk_candidates"]
    cand_scores, cand_index = [], []
    for stride in head.strides:  # per level: the best k, the other levels scored -1
        level = torch.where((strides == float(stride))[None, :, None], scores, -1.0).flatten(1)
        level = torch.cat([level, level.new_full((batch, k), -1.0)], dim=1)  # at least k
        best, index = level.topk(k, dim=1)
        cand_scores.append(best)
        cand_index.append(index)
    score = torch.cat(cand_scores, dim=1)  # [B, L*k]
    index = torch.cat(cand_index, dim=1).clamp(max=locations * num_classes - 1)
    location, label = index // num_classes, index % num_classes
    boxes = _decode(head, raw, location)  # [B, L*k, 4]
    sizes = image_sizes.to(torch.float32)
    limit = torch.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], dim=1)[:, None]
    boxes = torch.minimum(boxes.clamp(min=0.0), limit)
    wh = boxes[..., 2:] - boxes[..., :2]
    keep = (score > settings["conf"]) & (wh[..., 0] >= MIN_BOX_SIZE) & (wh[..., 1] >= MIN_BOX_SIZE)
    image, slot = keep.nonzero().unbind(1)
    boxes, score, label = boxes[image, slot], score[image, slot], label[image, slot]
    location = location[image, slot]
    # One NMS for every image and class: shift x by class and y by image, so that boxes of
    # different classes or images never overlap (exact IoU within one image and class).
    height, width = padded
    shift_x = label.to(torch.float32) * (width + 1)
    shift_y = image.to(torch.float32) * (height + 1)
    shift = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1)
    kept = torchvision.ops.nms(boxes + shift, score, settings["iou"])  # descending score
    # The best max_det of each image: an image × kept matrix of scores, -1 off the image.
    owner = image[kept]
    rows = torch.arange(batch, device=owner.device)[:, None] == owner[None, :]
    table = torch.where(rows, score[kept][None, :], -1.0)
    max_det = settings["max_det"]
    table = torch.cat([table, table.new_full((batch, max_det), -1.0)], dim=1)
    top_score, top_index = table.topk(max_det, dim=1)
    row, col = (top_score > -0.5).nonzero().unbind(1)
    final = kept[top_index[row, col]]
    return boxes[final], score[final], label[final], row, location[final]


def detection_extras(
    kind: str, raw: Mapping[str, Tensor], batch_index: Tensor, location: Tensor
) -> list[Tensor]:
    """The per-detection outputs of a ``kind`` beyond the four of :func:`detect`, gathered at
    each kept detection's image and location: ``keypoints [N, K, 3]`` (x, y in input pixels,
    visibility probability) or ``embeddings [N, D]``; none for ``"detection"``."""
    if kind == "keypoints":
        xy = raw["points"].float()[location][:, None, :]  # [N, 1, 2]
        xy = xy + raw["keypoint_offsets"].float()[batch_index, location]  # [N, K, 2]
        visible = raw["keypoint_logits"].float().sigmoid()[batch_index, location]  # [N, K]
        return [torch.cat([xy, visible[..., None]], dim=-1)]
    if kind == "detection_embedding":
        return [raw["embeddings"].float()[batch_index, location]]
    return []


def semantic_mask(head: nn.Module, raw: Mapping[str, Tensor]) -> Tensor:
    """The label map ``[B, H, W]`` of the padded batch (logits upsampled by the head's
    ``output_stride``, then argmax)."""
    logits = raw["logits"].float()
    stride = int(head.output_stride)
    if stride != 1:
        size = (logits.shape[-2] * stride, logits.shape[-1] * stride)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits.argmax(dim=1).to(mask_dtype(head))


class EndToEndModule(nn.Module):
    """``forward(images, image_sizes)`` → the flat outputs of :func:`output_layout`."""

    def __init__(self, model: VisionModel, settings: NmsSettings) -> None:
        super().__init__()
        settings.check()
        self.model = model
        self.kinds = {name: head_kind(name, head) for name, head in model.heads.items()}
        self.settings = {
            name: settings.of(name, head)
            for name, head in model.heads.items()
            if self.kinds[name] in DETECTION_KINDS
        }

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        raw: Any = self.model(images)
        outputs: list[Tensor] = []
        for name, head in self.model.heads.items():
            kind = self.kinds[name]
            if kind in DETECTION_KINDS:
                padded = images.shape[-2:]
                *found, location = detect_with_locations(
                    head, raw[name], image_sizes, padded, self.settings[name]
                )
                outputs += found
                outputs += detection_extras(kind, raw[name], found[3], location)
            elif kind == "classification":
                outputs.append(raw[name]["logits"].float().softmax(dim=1))
            elif kind == "embedding":
                outputs.append(raw[name]["embedding"].float())
            else:
                outputs.append(semantic_mask(head, raw[name]))
        return tuple(outputs)


def reference_outputs(model: VisionModel, settings: NmsSettings, images: Tensor) -> list[Tensor]:
    """What the graph should return for an unpadded batch ``images``, computed by the heads'
    own ``postprocess`` (the PyTorch path of ``VisionModel.predict``) with the baked-in
    settings; for :func:`visionkit.export.verify.verify_end_to_end`."""
    sizes = [tuple(images.shape[-2:])] * images.shape[0]
    raw = model(images)
    outputs: list[Tensor] = []
    for name, head in model.heads.items():
        kind = head_kind(name, head)
        if kind == "classification":
            outputs.append(torch.stack([p["scores"] for p in head.postprocess(raw[name])]))
        elif kind == "embedding":
            outputs.append(torch.stack([p["embedding"] for p in head.postprocess(raw[name])]))
        elif kind == "semantic":
            masks = [p["mask"] for p in head.postprocess(raw[name], sizes)]
            outputs.append(torch.stack(masks).to(mask_dtype(head)))
        else:
            baked = settings.of(name, head)
            saved = head.score_thresh, head.nms_thresh, head.detections_per_img
            head.score_thresh, head.nms_thresh = baked["conf"], baked["iou"]
            head.detections_per_img = baked["max_det"]
            try:  # FCOSHead's own postprocess for fcos_mask: its boxes, not its masks
                preds = (
                    FCOSHead.postprocess(head, raw[name], sizes)
                    if kind == "detection" and isinstance(head, FCOSHead)
                    else head.postprocess(raw[name], sizes)
                )
            finally:
                head.score_thresh, head.nms_thresh, head.detections_per_img = saved
            outputs += [
                torch.cat([p["boxes"] for p in preds]),
                torch.cat([p["scores"] for p in preds]),
                torch.cat([p["labels"] for p in preds]),
                torch.cat([torch.full((len(p["labels"]),), i) for i, p in enumerate(preds)]),
            ]
            outputs += [
                torch.cat([p[key] for p in preds]).float()
                for key in output_keys(kind)[len(DETECTION_KEYS) :]
            ]
    return outputs
