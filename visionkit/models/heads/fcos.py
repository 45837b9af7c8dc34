"""FCOS: anchor-free one-stage detection on a feature pyramid (Tian et al., 2019).

Every feature-map cell centre is a *point*; a point inside an object (its centre region, with
centre sampling) at the level whose size range fits the object predicts the class, the four
distances to the box sides and a centerness score.

Level size ranges: with strides ``s_0 < s_1 < ...``, level ``i`` is responsible for objects
whose largest distance ``m = max(l, t, r, b)`` from the point satisfies
``8 * s_{i-1} <= m <= 8 * s_i``, with ``0`` below the first level and ``inf`` above the
last. On P3–P7 this is FCOS's ``[0, 64], [64, 128], [128, 256], [256, 512], [512, inf]``.

>>> import torch
>>> head = FCOSHead(in_channels=[32, 32, 32], strides=[8, 16, 32], num_classes=3)
>>> out = head([torch.rand(2, 32, 8, 8), torch.rand(2, 32, 4, 4), torch.rand(2, 32, 2, 2)])
>>> out["cls_logits"].shape, out["bbox_regression"].shape, out["points"].shape
(torch.Size([2, 84, 3]), torch.Size([2, 84, 4]), torch.Size([84, 2]))
>>> batch = {"boxes": [torch.tensor([[8.0, 8.0, 40.0, 48.0]]), torch.zeros(0, 4)],
...          "labels": [torch.tensor([1]), torch.zeros(0, dtype=torch.long)],
...          "has_boxes": torch.tensor([True, False])}
>>> sorted(head.loss(out, batch))
['box', 'cls', 'ctr']
>>> head.postprocess(out, [(64, 64), (64, 64)])[0]["boxes"].shape[1]
4
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import complete_box_iou_loss as ciou_loss
from torchvision.ops import distance_box_iou_loss as diou_loss
from torchvision.ops import generalized_box_iou_loss as giou_loss

from visionkit.models.heads._utils import (
    DetectionTargets,
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
from visionkit.models.heads.fcos_assign import (
    FCOSTargets,
    centerness_targets,
    fcos_scale_ranges,
    labels_of,
    ltrb_iou,
    match_fcos_points,
)
from visionkit.registry import HEADS

MAX_LOG_DISTANCE = 10.0  # exp() argument clamp for the regression (e^10 strides ≈ 22k × stride)
#: ``box_coding`` values: how the box branch's output becomes distances (see :class:`FCOSHead`).
BOX_CODINGS = ("exp", "relu")
#: ``quality`` values: what the third branch learns to predict (see :class:`FCOSHead`).
QUALITY_TARGETS = ("centerness", "iou")
#: ``box_loss`` values: torchvision.ops' IoU losses of the box branch (see :class:`FCOSHead`).
BOX_LOSSES = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}


@HEADS.register("fcos")
class FCOSHead(nn.Module):
    """FCOS on a neck's levels: shared cls and box conv towers over all levels, per-level
    regression scales.

    Args:
        in_channels: channels of each input level, all equal (e.g. an FPN neck's).
        strides: stride of each input level.
        num_classes: number of object classes C (no background class); ``None`` takes the
            number of ``class_names``.
        num_convs: 3x3 convs in each tower.
        width: channels of the towers (default ``in_channels``).
        norm: the towers' normalisation (:data:`visionkit.models.norm.NORMS`): ``"group"``
            (GroupNorm, FCOS's), ``"batch"`` (BatchNorm, cheaper on the CPU; its statistics
            mix the levels the tower is shared by) or ``"none"``.
        prior_prob: initial foreground probability of the classifier (bias init).
        center_sampling_radius: centre-sampling radius in strides; ``<= 0`` disables.
        score_thresh: minimum detection score ``sqrt(p_cls * p_ctr)`` kept by postprocess.
        nms_thresh: IoU threshold of the class-wise NMS.
        topk_candidates: best-scoring (point, class) pairs kept per level before NMS.
        detections_per_img: detections kept per image after NMS.
        class_names: names of the C classes, used in predictions.
        focal_alpha, focal_gamma: parameters of the sigmoid focal loss.
        box_coding: how the box branch's output ``x`` at level ``l`` becomes the distances
            (l, t, r, b): ``"exp"``: ``exp(scales[l] * x) * stride_l``; ``"relu"``:
            ``relu(scales[l] * x) * stride_l``, FCOS's normalised regression, what
            torchvision's ``fcos_resnet50_fpn`` computes (its ``scales`` are all 1).
        grid_offset: where a cell's point lies inside the cell, in strides: ``0.5`` is its
            centre ``((j + 0.5) * s, (i + 0.5) * s)``; ``0.0`` its top-left corner
            ``(j * s, i * s)``, where torchvision's anchor generator puts it.
        quality: the target of the third branch (``centerness`` logits), whose probability
            multiplies the class probability in the score: ``"centerness"``, FCOS's geometric
            centerness of the point in its box; ``"iou"``, the IoU of the box predicted at the
            point with its ground-truth box (detached; IoU-aware scoring as in Wu et al. 2020
            and VarifocalNet), so better-placed boxes rank first.
        box_loss: the IoU loss of the ``box`` term, from torchvision.ops: ``"giou"``
            (generalized IoU, FCOS's), ``"diou"`` (distance IoU: also the distance between
            the box centres) or ``"ciou"`` (complete IoU: also the aspect ratio), Zheng et al.
            2020.
        box_loss_weight: factor on the ``box`` term.

    Example:
        >>> import torch
        >>> head = FCOSHead(in_channels=[16, 16], strides=[8, 16], num_classes=2, num_convs=1)
        >>> out = head([torch.rand(1, 16, 4, 4), torch.rand(1, 16, 2, 2)])
        >>> {k: tuple(v.shape) for k, v in out.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'cls_logits': (1, 20, 2), 'bbox_regression': (1, 20, 4), 'centerness': (1, 20),
         'points': (20, 2), 'point_strides': (20,)}
    """

    task: ClassVar[str] = "detection"
    reads: ClassVar[str] = "neck"
    _name: ClassVar[str] = "fcos"  # what its error messages call it

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int | None = None,
        num_convs: int = 4,
        width: int | None = None,
        norm: str = "group",
        prior_prob: float = 0.01,
        center_sampling_radius: float = 1.5,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        topk_candidates: int = 1000,
        detections_per_img: int = 100,
        class_names: list[str] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_coding: str = "exp",
        grid_offset: float = 0.5,
        quality: str = "centerness",
        box_loss: str = "giou",
        box_loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        name = self._name
        in_channels = pyramid_channels(name, in_channels, strides)
        num_classes = resolve_num_classes(name, num_classes, class_names)
        check_head_args(name, num_classes, class_names, strides, prior_prob)
        if box_coding not in BOX_CODINGS:
            raise ValueError(
                f"{name}: box_coding must be one of {list(BOX_CODINGS)}, got {box_coding!r}"
            )
        if not 0 <= grid_offset < 1:
            raise ValueError(f"{name}: grid_offset must lie in [0, 1) strides, got {grid_offset}")
        if quality not in QUALITY_TARGETS:
            raise ValueError(
                f"{name}: quality must be one of {list(QUALITY_TARGETS)}, got {quality!r}"
            )
        if box_loss not in BOX_LOSSES:
            raise ValueError(
                f"{name}: box_loss must be one of {list(BOX_LOSSES)}, got {box_loss!r}"
            )
        if box_loss_weight < 0:
            raise ValueError(f"{name}: box_loss_weight must be >= 0, got {box_loss_weight}")
        self.quality, self.box_loss_weight = quality, float(box_loss_weight)
        self.box_loss = box_loss
        width = width or in_channels
        self.in_channels = in_channels
        self.num_convs, self.width, self.norm = num_convs, width, norm
        self.box_coding, self.grid_offset = box_coding, float(grid_offset)
        self.num_classes = num_classes
        self.strides = [int(s) for s in strides]
        self.class_names = list(class_names) if class_names else None
        self.center_sampling_radius = center_sampling_radius
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.topk_candidates, self.detections_per_img = topk_candidates, detections_per_img
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.cls_tower = conv_tower(in_channels, width, num_convs, norm)
        self.bbox_tower = conv_tower(in_channels, width, num_convs, norm)
        tower_out = width if num_convs > 0 else in_channels
        self.cls_logits = nn.Conv2d(tower_out, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(tower_out, 4, 3, padding=1)
        self.centerness = nn.Conv2d(tower_out, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.strides)))  # one per level
        self.register_buffer("scale_ranges", fcos_scale_ranges(self.strides), persistent=False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Raw outputs for maps ``[B, in_channels, H_l, W_l]``, one per stride.

        Returns:
            ``cls_logits`` ``[B, P, C]``, ``bbox_regression`` fp32 ``[B, P, 4]`` (l, t, r, b
            distances in pixels, > 0; >= 0 with ``box_coding="relu"``), ``centerness`` logits
            ``[B, P]``, ``points`` fp32 ``[P, 2]`` (x, y in pixels, placed by ``grid_offset``)
            and ``point_strides`` fp32 ``[P]``, where
            ``P = sum_l H_l * W_l`` in level, then row-major order.
        """
        return self.forward_with_box_features(features)[0]

    def point_branch(self, num_convs: int, out_channels: int) -> tuple[nn.Module, nn.Conv2d]:
        """A per-point branch for subclasses (keypoints, embeddings): a tower of ``num_convs``
        3×3 convs (the head's ``width`` and ``norm``) on the box tower's output (see
        :meth:`forward_with_box_features`), and the 3×3 conv after it to ``out_channels``."""
        tower_out = self.width if self.num_convs > 0 else self.in_channels
        tower = conv_tower(tower_out, self.width, num_convs, self.norm)
        pred = nn.Conv2d(self.width if num_convs > 0 else tower_out, out_channels, 3, padding=1)
        return tower, pred

    def forward_with_box_features(
        self, features: list[Tensor]
    ) -> tuple[dict[str, Tensor], list[Tensor]]:
        """:meth:`forward`'s outputs, and the box tower's output on each level
        (``[B, width, H_l, W_l]``), for subclasses that predict more per point."""
        if len(features) != len(self.strides):
            raise ValueError(
                f"fcos: got {len(features)} feature maps, built for strides {self.strides}"
            )
        cls_maps, reg_maps, ctr_maps, box_feats = [], [], [], []
        for level, x in enumerate(features):
            cls_feat, box_feat = self.cls_tower(x), self.bbox_tower(x)
            cls_maps.append(self.cls_logits(cls_feat))  # [B, C, H, W]
            raw = self.bbox_pred(box_feat).float() * self.scales[level]  # [B, 4, H, W]
            if self.box_coding == "relu":
                reg_maps.append(F.relu(raw) * self.strides[level])
            else:
                reg_maps.append(raw.clamp(max=MAX_LOG_DISTANCE).exp() * self.strides[level])
            ctr_maps.append(self.centerness(box_feat))  # [B, 1, H, W]
            box_feats.append(box_feat)
        points, point_strides = grid_points(
            [f.shape[-2:] for f in features], self.strides, features[0].device
        )
        if self.grid_offset != 0.5:  # grid_points gives the cell centres
            points = points + (self.grid_offset - 0.5) * point_strides[:, None]
        outputs = {
            "cls_logits": flatten_levels(cls_maps),  # [B, P, C]
            "bbox_regression": flatten_levels(reg_maps),  # [B, P, 4]
            "centerness": flatten_levels(ctr_maps).squeeze(2),  # [B, P]
            "points": points,  # [P, 2]
            "point_strides": point_strides,  # [P]
        }
        return outputs, box_feats

    @torch.no_grad()
    def assign_batch(self, outputs: Mapping[str, Tensor], targets: DetectionTargets) -> FCOSTargets:
        """Per-point targets of every image from :meth:`forward`'s ``outputs``:
        :func:`match_fcos_points` with this head's level ranges and centre sampling (points ×
        boxes vectorised within an image); images with ``valid`` False are all background."""
        points, point_strides = outputs["points"].float(), outputs["point_strides"].float()
        batch_size, num_points = len(targets.boxes), points.shape[0]
        level = torch.searchsorted(point_strides.new_tensor(self.strides), point_strides)
        ranges = self.scale_ranges.to(points.device)[level]  # [P, 2]
        radius = self.center_sampling_radius
        matched = torch.full((batch_size, num_points), -1, dtype=torch.long, device=points.device)
        labels = matched.clone()
        ltrb = point_strides[None, :, None].expand(batch_size, -1, 4).clone()  # dummy: valid box
        for i, valid in enumerate(targets.valid.tolist()):
            if valid and len(targets.boxes[i]):
                match, dist = match_fcos_points(
                    points, ranges, point_strides, targets.boxes[i], radius
                )
                matched[i] = match
                labels[i] = labels_of(match, targets.labels[i])
                ltrb[i] = torch.where((match >= 0)[:, None], dist, ltrb[i])
        return FCOSTargets(labels=labels, ltrb=ltrb, matched=matched)

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        """Focal loss (``cls``), IoU loss (``box``: ``box_loss``, times ``box_loss_weight``)
        and the BCE of the quality branch (``ctr``: centerness, or IoU with ``quality="iou"``).

        ``cls`` and ``ctr`` are divided by the number of positive points (at least 1),
        ``box`` is weighted by the centerness targets and divided by their sum. Images with
        ``has_boxes`` False weigh zero; without ``boxes`` every term is an exact 0. All
        terms stay connected to every parameter. Normalisers are per process (not reduced
        across DDP ranks). All in fp32.
        """
        cls_logits = outputs["cls_logits"]
        with torch.autocast(device_type=cls_logits.device.type, enabled=False):
            return self._loss(outputs, targets)

    def _loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        unpacked = unpack_targets(targets, outputs["cls_logits"].shape[0], outputs["points"].device)
        if unpacked is None:
            return self._zero_detection_losses(outputs)
        return self._detection_losses(outputs, unpacked, self.assign_batch(outputs, unpacked))

    @staticmethod
    def _zero_detection_losses(outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {
            "cls": zero_loss(outputs["cls_logits"]),
            "box": zero_loss(outputs["bbox_regression"]),
            "ctr": zero_loss(outputs["centerness"]),
        }

    def _detection_losses(
        self, outputs: Mapping[str, Tensor], targets: DetectionTargets, assigned: FCOSTargets
    ) -> dict[str, Tensor]:
        cls_logits = outputs["cls_logits"].float()  # [B, P, C]
        regression = outputs["bbox_regression"].float()  # [B, P, 4]
        centerness = outputs["centerness"].float()  # [B, P]
        labels, ltrb = assigned.labels, assigned.ltrb
        positive = labels >= 0  # [B, P]; only in valid images
        num_pos = positive.sum().clamp(min=1).float()

        annotated = targets.annotated_classes(cls_logits.shape[-1], self._name)  # [B, C]
        cls_loss = focal_loss(
            cls_logits,
            labels,
            targets.valid,
            num_pos,
            self.focal_alpha,
            self.focal_gamma,
            None if annotated is None else annotated[:, None, :],
        )

        ctr_target = centerness_targets(ltrb)  # [B, P]
        box_weight = ctr_target * positive
        # Boxes relative to their point (IoU losses are translation-invariant): (-l, -t, r, b).
        sign = regression.new_tensor([-1.0, -1.0, 1.0, 1.0])
        iou_loss = BOX_LOSSES[self.box_loss](regression * sign, ltrb * sign, reduction="none")
        box_loss = (iou_loss * box_weight).sum() / box_weight.sum().clamp(min=1e-6)

        quality_target = (
            ltrb_iou(regression.detach(), ltrb) if self.quality == "iou" else ctr_target
        )
        bce = F.binary_cross_entropy_with_logits(centerness, quality_target, reduction="none")
        ctr_loss = (bce * positive).sum() / num_pos
        return {"cls": cls_loss, "box": self.box_loss_weight * box_loss, "ctr": ctr_loss}

    @torch.no_grad()
    def postprocess(
        self,
        outputs: Mapping[str, Tensor],
        image_sizes: Sizes,
        orig_sizes: Sizes | None = None,
    ) -> list[dict[str, Any]]:
        """Detections per image, decoded in fp32.

        Score ``sqrt(sigmoid(cls) * sigmoid(ctr))`` per (point, class); per level the best
        ``topk_candidates`` pairs, then those above ``score_thresh``; decode l, t, r, b to
        xyxy, clip to ``image_sizes[i]`` (H, W), drop empty boxes, class-wise NMS, keep
        ``detections_per_img``. With ``orig_sizes`` (H, W per image) boxes are rescaled by
        ``orig / image_size`` per axis.

        Returns:
            Per image ``{"boxes": [K, 4] xyxy, "scores": [K] (descending), "labels": int64
            [K], "names": list[str] or None}``.
        """
        return [pred for pred, _ in self.detect(outputs, image_sizes, orig_sizes)]

    @torch.no_grad()
    def detect(
        self,
        outputs: Mapping[str, Tensor],
        image_sizes: Sizes,
        orig_sizes: Sizes | None = None,
    ) -> list[tuple[dict[str, Any], Tensor]]:
        """:meth:`postprocess`'s predictions, each with the int64 index ``[K]`` of the point
        that produced each detection (for subclasses that decode more per point)."""
        cls_logits = outputs["cls_logits"]
        with torch.autocast(device_type=cls_logits.device.type, enabled=False):
            scores = (
                cls_logits.float().sigmoid() * outputs["centerness"].float().sigmoid()[..., None]
            ).sqrt()  # [B, P, C]
            regression = outputs["bbox_regression"].float()  # [B, P, 4]
            points = outputs["points"].float()  # [P, 2]
            batch_size, _, num_classes = scores.shape
            sizes = as_sizes(image_sizes, batch_size)
            originals = as_sizes(orig_sizes, batch_size)
            scores = off_the_padding(scores, points, sizes)
            cand_scores, cand_index = topk_per_level(
                scores, level_slices(outputs["point_strides"]), self.topk_candidates
            )  # [B, K]
            results = []
            for i in range(batch_size):
                keep = cand_scores[i] > self.score_thresh
                score, index = cand_scores[i][keep], cand_index[i][keep]
                point, label = index // num_classes, index % num_classes
                dist = regression[i, point]  # [N, 4]
                boxes = torch.cat([points[point] - dist[:, :2], points[point] + dist[:, 2:]], 1)
                prediction, kept = select_detections(
                    boxes,
                    score,
                    label,
                    sizes[i],
                    self.nms_thresh,
                    self.detections_per_img,
                    originals[i] if originals else None,
                    self.class_names,
                )
                results.append((prediction, point[kept]))
        return results
