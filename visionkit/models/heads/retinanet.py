"""RetinaNet: anchor-based one-stage detection with the focal loss (Lin et al., 2017).

Every feature-map cell carries ``A = len(scales) * len(aspect_ratios)`` anchors centred on the
cell centre (as FCOS's points): at stride ``s``, scale ``k`` and aspect ratio ``r = h / w``, an
anchor has area ``(anchor_sizes_per_stride * s * k) ** 2`` (32² to (512 · 2^(2/3))² on P3–P7
with the defaults, as in the paper). An anchor whose best IoU with a ground-truth box reaches
``fg_iou_thresh`` is positive (so, with low-quality matches, is each box's best anchor); below
``bg_iou_thresh`` it is background; in between, ignored. The head classifies every anchor
(sigmoid, focal loss) and regresses the (dx, dy, dw, dh) deltas from its anchor to its box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import box_convert, box_iou, generalized_box_iou_loss

from visionkit.models.heads._utils import (
    Sizes,
    as_sizes,
    check_head_args,
    conv_tower,
    flatten_levels,
    focal_loss,
    grid_points,
    level_slices,
    off_the_padding,
    pyramid_channels,
    resolve_num_classes,
    select_detections,
    topk_per_level,
    unpack_targets,
    zero_loss,
)
from visionkit.registry import HEADS

MATCH_BACKGROUND, MATCH_IGNORE = -1, -2  # anchor match codes; matches >= 0 index the boxes
MAX_LOG_SCALE = math.log(1000.0 / 16)  # clamp of the decoded dw, dh (as torchvision)


def cell_anchors(scales: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
    """Anchors ``[A, 4]`` xyxy of one cell of base size 1 centred on 0, ratio-major: ratio
    ``r = h / w`` keeps the area, ``w = k / sqrt(r)``, ``h = k * sqrt(r)`` for scale ``k``."""
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32).sqrt()[:, None]  # [R, 1]
    sizes = torch.as_tensor(scales, dtype=torch.float32)[None, :]  # [1, S]
    half_w, half_h = (sizes / ratios).reshape(-1) / 2, (sizes * ratios).reshape(-1) / 2  # [A]
    return torch.stack([-half_w, -half_h, half_w, half_h], dim=1)


def encode_boxes(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Deltas ``[..., 4]`` (dx, dy, dw, dh), weights (1, 1, 1, 1), from xyxy ``anchors`` to
    xyxy ``boxes`` (both ``[..., 4]``): ``dx = (cx - cx_a) / w_a``, ``dw = log(w / w_a)``."""
    box, anchor = box_convert(boxes, "xyxy", "cxcywh"), box_convert(anchors, "xyxy", "cxcywh")
    centre = (box[..., :2] - anchor[..., :2]) / anchor[..., 2:]
    return torch.cat([centre, (box[..., 2:] / anchor[..., 2:]).log()], dim=-1)


def decode_boxes(deltas: Tensor, anchors: Tensor) -> Tensor:
    """Inverse of :func:`encode_boxes`: xyxy boxes ``[..., 4]`` from deltas and xyxy
    ``anchors`` (both ``[..., 4]``); ``dw``, ``dh`` are clamped at ``log(1000 / 16)``."""
    anchor = box_convert(anchors, "xyxy", "cxcywh")
    centre = anchor[..., :2] + deltas[..., :2] * anchor[..., 2:]
    size = deltas[..., 2:].clamp(max=MAX_LOG_SCALE).exp() * anchor[..., 2:]
    return box_convert(torch.cat([centre, size], dim=-1), "cxcywh", "xyxy")


def match_anchors(
    anchors: Tensor,
    boxes: Tensor,
    fg_iou_thresh: float = 0.5,
    bg_iou_thresh: float = 0.4,
    allow_low_quality_matches: bool = True,
) -> Tensor:
    """IoU matching of one image's anchors to its boxes, vectorised over anchors × boxes.

    Args:
        anchors: ``[N, 4]`` xyxy.
        boxes: ``[M, 4]`` xyxy ground truth.
        fg_iou_thresh: an anchor with best IoU ``>= fg_iou_thresh`` matches that box.
        bg_iou_thresh: best IoU ``< bg_iou_thresh`` is background; in between is ignored.
        allow_low_quality_matches: also match, for every box, the anchors of highest IoU with
            it (when that IoU is > 0); such an anchor takes its own best box, as in
            torchvision's and Detectron2's ``Matcher``.

    Returns:
        int64 ``[N]``: the matched box's index, :data:`MATCH_BACKGROUND` (-1) or
        :data:`MATCH_IGNORE` (-2).
    """
    if boxes.numel() == 0:
        return torch.full(
            (anchors.shape[0],), MATCH_BACKGROUND, dtype=torch.long, device=anchors.device
        )
    iou = box_iou(boxes, anchors)  # [M, N]
    best_iou, matches = iou.max(dim=0)  # [N]
    out = torch.where(best_iou >= fg_iou_thresh, matches, MATCH_IGNORE)
    out = torch.where(best_iou < bg_iou_thresh, MATCH_BACKGROUND, out)
    if allow_low_quality_matches:
        best_per_box = iou.amax(dim=1, keepdim=True)  # [M, 1]
        is_best = ((iou == best_per_box) & (best_per_box > 0)).any(dim=0)  # [N]
        out = torch.where(is_best, matches, out)
    return out


@HEADS.register("retinanet")
class RetinaNetHead(nn.Module):
    """RetinaNet on a neck's levels: shared cls and box conv towers over all levels, ``A``
    anchors per cell.

    Args:
        in_channels: channels of each input level, all equal (e.g. an FPN neck's).
        strides: stride of each input level.
        num_classes: number of object classes C (no background class); ``None`` takes the
            number of ``class_names``.
        num_convs: 3x3 convs in each tower.
        width: channels of the towers (default ``in_channels``).
        norm: the towers' normalisation (:data:`visionkit.models.norm.NORMS`): ``"none"``
            (the paper), ``"group"`` (GroupNorm, as torchvision's v2) or ``"batch"``.
        anchor_sizes_per_stride: anchor base size in strides (base size ``= this * stride``).
        scales: anchor scales relative to the base size.
        aspect_ratios: anchor aspect ratios ``h / w``.
        fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches: see :func:`match_anchors`.
        box_loss: ``"smooth_l1"`` (beta 1/9) on the deltas, or ``"giou"`` on decoded boxes.
        prior_prob: initial foreground probability of the classifier (bias init).
        score_thresh: minimum class probability kept by postprocess.
        nms_thresh: IoU threshold of the class-wise NMS.
        topk_candidates: best-scoring (anchor, class) pairs kept per level before NMS.
        detections_per_img: detections kept per image after NMS.
        class_names: names of the C classes, used in predictions.
        focal_alpha, focal_gamma: parameters of the sigmoid focal loss.
        grid_offset: where a cell's anchors are centred inside the cell, in strides: ``0.5``
            is its centre; ``0.0`` its top-left corner ``(j * s, i * s)``, where torchvision's
            anchor generator puts them.
        round_anchors: make the anchors as torchvision's ``AnchorGenerator`` does: each
            size ``anchor_sizes_per_stride * stride * scale`` truncated to an integer, the
            anchor's corners rounded to whole pixels (torchvision's RetinaNet weights were
            trained with these anchors).

    Example:
        >>> import torch
        >>> head = RetinaNetHead(in_channels=[16, 16], strides=[8, 16], num_classes=2, num_convs=1)
        >>> out = head([torch.rand(2, 16, 8, 8), torch.rand(2, 16, 4, 4)])  # 9 anchors per cell
        >>> {k: tuple(v.shape) for k, v in out.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'cls_logits': (2, 720, 2), 'bbox_regression': (2, 720, 4), 'anchors': (720, 4),
         'anchor_strides': (720,)}
        >>> batch = {"boxes": [torch.tensor([[8.0, 8.0, 40.0, 48.0]]), torch.zeros(0, 4)],
        ...          "labels": [torch.tensor([1]), torch.zeros(0, dtype=torch.long)]}
        >>> {k: v.shape for k, v in head.loss(out, batch).items()}
        {'cls': torch.Size([]), 'box': torch.Size([])}
        >>> sorted(head.postprocess(out, [(64, 64), (64, 64)])[0])
        ['boxes', 'labels', 'names', 'scores']
    """

    task: ClassVar[str] = "detection"
    reads: ClassVar[str] = "neck"

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int | None = None,
        num_convs: int = 4,
        width: int | None = None,
        norm: str = "none",
        anchor_sizes_per_stride: float = 4.0,
        scales: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        allow_low_quality_matches: bool = True,
        box_loss: str = "smooth_l1",
        prior_prob: float = 0.01,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        topk_candidates: int = 1000,
        detections_per_img: int = 100,
        class_names: list[str] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        grid_offset: float = 0.5,
        round_anchors: bool = False,
    ) -> None:
        super().__init__()
        in_channels = pyramid_channels("retinanet", in_channels, strides)
        num_classes = resolve_num_classes("retinanet", num_classes, class_names)
        check_head_args("retinanet", num_classes, class_names, strides, prior_prob)
        if not 0 <= bg_iou_thresh <= fg_iou_thresh <= 1:
            raise ValueError(
                f"retinanet: need 0 <= bg_iou_thresh <= fg_iou_thresh <= 1, got "
                f"{bg_iou_thresh}, {fg_iou_thresh}"
            )
        if box_loss not in ("smooth_l1", "giou"):
            raise ValueError(f"retinanet: box_loss must be 'smooth_l1' or 'giou', got {box_loss!r}")
        sizes = [anchor_sizes_per_stride, *scales, *aspect_ratios]
        if not scales or not aspect_ratios or min(sizes) <= 0:
            raise ValueError(
                f"retinanet: anchor_sizes_per_stride, scales and aspect_ratios must be positive, "
                f"got {anchor_sizes_per_stride}, {list(scales)}, {list(aspect_ratios)}"
            )
        if not 0 <= grid_offset < 1:
            raise ValueError(
                f"retinanet: grid_offset must lie in [0, 1) strides, got {grid_offset}"
            )
        width = width or in_channels
        self.num_convs, self.width, self.norm = num_convs, width, norm
        self.anchor_scales, self.aspect_ratios = tuple(scales), tuple(aspect_ratios)
        self.grid_offset, self.round_anchors = float(grid_offset), bool(round_anchors)
        self.num_classes = num_classes
        self.strides = [int(s) for s in strides]
        self.class_names = list(class_names) if class_names else None
        self.anchor_sizes_per_stride = float(anchor_sizes_per_stride)
        self.fg_iou_thresh, self.bg_iou_thresh = fg_iou_thresh, bg_iou_thresh
        self.allow_low_quality_matches = allow_low_quality_matches
        self.box_loss = box_loss
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.topk_candidates, self.detections_per_img = topk_candidates, detections_per_img
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        base = cell_anchors(scales, aspect_ratios)  # [A, 4] for a base size of 1
        self.register_buffer("base_anchors", base, persistent=False)
        self.num_anchors = len(base)  # A
        if self.round_anchors:  # [L, A, 4] in pixels, one set per level
            sizes = [[int(anchor_sizes_per_stride * s * k) for k in scales] for s in self.strides]
            generator = AnchorGenerator(
                tuple(map(tuple, sizes)), (tuple(aspect_ratios),) * len(sizes)
            )
            rounded = torch.stack(list(generator.cell_anchors))
            self.register_buffer("level_anchors", rounded, persistent=False)
        self.cls_tower = conv_tower(in_channels, width, num_convs, norm)
        self.bbox_tower = conv_tower(in_channels, width, num_convs, norm)
        tower_out = width if num_convs > 0 else in_channels
        self.cls_logits = nn.Conv2d(tower_out, self.num_anchors * num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(tower_out, self.num_anchors * 4, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def anchors(
        self, sizes: Sequence[Sequence[int]], device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Anchors of feature maps of ``sizes`` (H_l, W_l), one per stride.

        Returns:
            ``anchors`` fp32 ``[N, 4]`` xyxy in input pixels, centred on the cell centres
            ``((j + 0.5) * s, (i + 0.5) * s)`` (on ``((j + o) * s, (i + o) * s)`` with
            ``grid_offset`` o), and ``anchor_strides`` fp32 ``[N]``, where
            ``N = A * sum_l H_l * W_l`` in level, then row-major, then anchor order.
        """
        points, point_strides = grid_points(sizes, self.strides, device)  # [P, 2], [P]
        if self.grid_offset != 0.5:  # grid_points gives the cell centres
            points = points + (self.grid_offset - 0.5) * point_strides[:, None]
        if self.round_anchors:
            level = self.level_anchors.to(device=device, dtype=torch.float32)  # [L, A, 4]
            cells = torch.cat(
                [level[i][None].expand(h * w, -1, -1) for i, (h, w) in enumerate(sizes)]
            )  # [P, A, 4]
        else:
            size = point_strides * self.anchor_sizes_per_stride  # [P] base size of each cell
            base = self.base_anchors.to(device=device, dtype=torch.float32)  # [A, 4]
            cells = base[None] * size[:, None, None]  # [P, A, 4]
        anchors = points.repeat(1, 2)[:, None, :] + cells  # [P, A, 4]
        return anchors.reshape(-1, 4), point_strides.repeat_interleave(self.num_anchors)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Raw outputs for maps ``[B, in_channels, H_l, W_l]``, one per stride.

        Returns:
            ``cls_logits`` ``[B, N, C]``, ``bbox_regression`` ``[B, N, 4]`` (dx, dy, dw, dh
            deltas from the anchors), ``anchors`` fp32 ``[N, 4]`` xyxy in input pixels and
            ``anchor_strides`` fp32 ``[N]``; ``N = A * sum_l H_l * W_l``, ordered as in
            :meth:`anchors`.
        """
        if len(features) != len(self.strides):
            raise ValueError(
                f"retinanet: got {len(features)} feature maps, built for strides {self.strides}"
            )
        cls_maps = [self.cls_logits(self.cls_tower(x)) for x in features]  # [B, A*C, H, W]
        reg_maps = [self.bbox_pred(self.bbox_tower(x)) for x in features]  # [B, A*4, H, W]
        batch_size = features[0].shape[0]
        anchors, anchor_strides = self.anchors([f.shape[-2:] for f in features], features[0].device)
        return {
            # channel a * K + k of a cell is its anchor a's entry k: [B, HW, A*K] → [B, HW*A, K]
            "cls_logits": flatten_levels(cls_maps).reshape(batch_size, -1, self.num_classes),
            "bbox_regression": flatten_levels(reg_maps).reshape(batch_size, -1, 4),
            "anchors": anchors,  # [N, 4]
            "anchor_strides": anchor_strides,  # [N]
        }

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        """Focal loss (``cls``) and box loss (``box``), in fp32.

        ``cls`` sums over the anchors that are not ignored, ``box`` over the positive anchors
        (smooth L1 on the deltas or GIoU on the decoded boxes); both are divided by the number
        of positive anchors (at least 1). Images with ``has_boxes`` False weigh zero; without
        ``boxes`` every term is an exact 0. All terms stay connected to every parameter.
        Normalisers are per process (not reduced across DDP ranks).
        """
        cls_logits = outputs["cls_logits"]
        with torch.autocast(device_type=cls_logits.device.type, enabled=False):
            return self._loss(outputs, targets)

    def _loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        cls_logits = outputs["cls_logits"].float()  # [B, N, C]
        regression = outputs["bbox_regression"].float()  # [B, N, 4]
        anchors = outputs["anchors"].float()  # [N, 4]
        batch_size, num_anchors, _ = cls_logits.shape
        unpacked = unpack_targets(targets, batch_size, cls_logits.device)
        if unpacked is None:
            return {"cls": zero_loss(cls_logits), "box": zero_loss(regression)}
        matches = cls_logits.new_full((batch_size, num_anchors), MATCH_BACKGROUND, dtype=torch.long)
        thresholds = (self.fg_iou_thresh, self.bg_iou_thresh, self.allow_low_quality_matches)
        for i, valid in enumerate(unpacked.valid.tolist()):  # anchors × boxes vectorised inside
            if valid:
                matches[i] = match_anchors(anchors, unpacked.boxes[i], *thresholds)
        positive = matches >= 0  # [B, N]; only in valid images
        num_pos = positive.sum().clamp(min=1).float()
        counts = torch.tensor([len(b) for b in unpacked.boxes], device=matches.device)  # [B]
        first = (counts.cumsum(0) - counts)[:, None]  # [B, 1] offset of each image's boxes
        gt_index = (matches + first)[positive]  # [K] into the boxes of the whole batch
        labels = torch.full_like(matches, MATCH_BACKGROUND)  # [B, N]; a class, or -1
        labels[positive] = torch.cat(unpacked.labels)[gt_index]

        counted = (matches != MATCH_IGNORE) & unpacked.valid[:, None]  # [B, N]: not ignored
        logits, target = cls_logits[counted][None], labels[counted][None]  # one "image" [1, K']
        annotated = unpacked.annotated_classes(cls_logits.shape[-1], "retinanet")  # [B, C]
        if annotated is not None:  # each counted anchor's image's row: [1, K', C]
            annotated = annotated[:, None, :].expand(-1, num_anchors, -1)[counted][None]
        cls_loss = focal_loss(
            logits,
            target,
            counted.new_ones(1),
            num_pos,
            self.focal_alpha,
            self.focal_gamma,
            annotated,
        )

        gt_boxes = torch.cat(unpacked.boxes)[gt_index]  # [K, 4]
        pos_anchors = anchors[None].expand(batch_size, -1, -1)[positive]  # [K, 4]
        if self.box_loss == "giou":
            pred = decode_boxes(regression[positive], pos_anchors)
            box = generalized_box_iou_loss(pred, gt_boxes, reduction="sum")
        else:
            deltas = encode_boxes(gt_boxes, pos_anchors)
            box = F.smooth_l1_loss(regression[positive], deltas, beta=1 / 9, reduction="sum")
        return {"cls": cls_loss, "box": box / num_pos}

    @torch.no_grad()
    def postprocess(
        self, outputs: Mapping[str, Tensor], image_sizes: Sizes, orig_sizes: Sizes | None = None
    ) -> list[dict[str, Any]]:
        """Detections per image, decoded in fp32.

        Score ``sigmoid(cls)`` per (anchor, class); per level the best ``topk_candidates``
        pairs, then those above ``score_thresh``; decode the deltas to xyxy, clip to
        ``image_sizes[i]`` (H, W), drop empty boxes, class-wise NMS, keep
        ``detections_per_img``. With ``orig_sizes`` (H, W per image) boxes are rescaled by
        ``orig / image_size`` per axis.

        Returns:
            Per image ``{"boxes": [K, 4] xyxy, "scores": [K] (descending), "labels": int64
            [K], "names": list[str] or None}``.
        """
        cls_logits = outputs["cls_logits"]
        with torch.autocast(device_type=cls_logits.device.type, enabled=False):
            scores = cls_logits.float().sigmoid()  # [B, N, C]
            regression = outputs["bbox_regression"].float()  # [B, N, 4]
            anchors = outputs["anchors"].float()  # [N, 4]
            batch_size, _, num_classes = scores.shape
            sizes = as_sizes(image_sizes, batch_size)
            originals = as_sizes(orig_sizes, batch_size)
            scores = off_the_padding(scores, (anchors[:, :2] + anchors[:, 2:]) / 2, sizes)
            cand_scores, cand_index = topk_per_level(
                scores, level_slices(outputs["anchor_strides"]), self.topk_candidates
            )  # [B, K]
            nms, cap, names = self.nms_thresh, self.detections_per_img, self.class_names
            results = []
            for i in range(batch_size):
                keep = cand_scores[i] > self.score_thresh
                score, index = cand_scores[i][keep], cand_index[i][keep]
                anchor, label = index // num_classes, index % num_classes
                boxes = decode_boxes(regression[i, anchor], anchors[anchor])  # [K, 4]
                orig = originals[i] if originals else None
                det, _ = select_detections(boxes, score, label, sizes[i], nms, cap, orig, names)
                results.append(det)
        return results
