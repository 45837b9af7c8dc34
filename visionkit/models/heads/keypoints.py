"""FCOS with keypoints: per-instance keypoints regressed at every FCOS point.

Choice: **direct regression per FCOS point**, not heatmaps. A point that FCOS assigns to an
object also predicts, for each of the K keypoints, its offset from the point in units of the
level's stride (times a learnt per-level scale) and a visibility logit. The alternative,
heatmaps on a stride-4/8 map cropped per box with RoIAlign (Mask R-CNN keypoints), is more
accurate on large, articulated objects but costs a second stage (RoIAlign, a deconvolution
tower, a K-channel map per box), needs a boxes-to-crops step that exports poorly, and on
small images (objects tens of pixels wide) a stride-4 map gives few cells per object anyway.
Regression adds one small conv tower to FCOS, decodes with an index and an add (what ONNX
export and batch inference like), and its L1 loss in strides makes the error scale with the
object, as OKS does.

The offsets are learnt on FCOS's positive points (the same assignment as the boxes): L1
between predicted and true offsets (in strides) over the keypoints labelled ``v > 0``,
weighted by the point's centerness target, divided by the weight of the labelled points;
the visibility logits learn ``v == 2`` (visible) by BCE over all K keypoints of the positive
points. Images whose ``has_keypoints`` is False (or without ``keypoints``) weigh zero.

>>> import torch
>>> head = FCOSKeypointsHead(in_channels=[16, 16], strides=[8, 16], num_classes=2,
...                          num_keypoints=3, num_convs=1)
>>> out = head([torch.rand(2, 16, 8, 8), torch.rand(2, 16, 4, 4)])
>>> tuple(out["keypoint_offsets"].shape), tuple(out["keypoint_logits"].shape)
((2, 80, 3, 2), (2, 80, 3))
>>> kpts = torch.tensor([[[10.0, 12.0, 2], [30.0, 40.0, 1], [0.0, 0.0, 0]]])
>>> batch = {"boxes": [torch.tensor([[8.0, 8.0, 40.0, 48.0]])] * 2,
...          "labels": [torch.tensor([1])] * 2, "keypoints": [kpts, kpts]}
>>> sorted(head.loss(out, batch))
['box', 'cls', 'ctr', 'kpt', 'kpt_vis']
>>> pred = head.eval().postprocess(out, [(64, 64)] * 2, orig_sizes=[(128, 128)] * 2)[0]
>>> pred["keypoints"].shape[1:]
torch.Size([3, 3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.data.batch import scale_about_pixel_centres
from visionkit.models.heads._utils import (
    DetectionTargets,
    Sizes,
    as_sizes,
    flatten_levels,
    unpack_targets,
    zero_loss,
)
from visionkit.models.heads.fcos import FCOSHead, FCOSTargets, centerness_targets
from visionkit.registry import HEADS

#: pycocotools' per-keypoint OKS sigmas of COCO's 17 person keypoints (``COCOeval`` default).
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
#: The sigma of every keypoint when there are not 17 and none are given: the mean of
#: COCO's (as strict as COCO is on average).
UNIFORM_SIGMA = round(sum(COCO_SIGMAS) / len(COCO_SIGMAS), 4)


def default_sigmas(num_keypoints: int) -> list[float]:
    """COCO's 17 sigmas when ``num_keypoints`` is 17, else :data:`UNIFORM_SIGMA` for each."""
    if num_keypoints == len(COCO_SIGMAS):
        return list(COCO_SIGMAS)
    return [UNIFORM_SIGMA] * num_keypoints


@HEADS.register("fcos_keypoints")
class FCOSKeypointsHead(FCOSHead):
    """FCOS detection plus K keypoints per object, regressed per point (see the module
    docstring for why, and for the loss).

    Args:
        in_channels: channels of each input level, all equal (e.g. an FPN neck's).
        strides: stride of each input level.
        num_classes: object classes C; ``None`` takes the number of ``class_names``.
        num_keypoints: K, the keypoints of every object (the dataset's categories'
            ``keypoints`` list; a batch with another K is an error); ``None``: as many as
            ``keypoint_names``, else COCO's 17 (a config's null: the training data's).
        keypoint_names: their names, for predictions (default ``"0"``, ``"1"``, ...).
        skeleton: 1-based ``[a, b]`` pairs of keypoints joined when drawn (COCO's
            ``skeleton``).
        kpt_oks_sigmas: per-keypoint OKS sigmas of the evaluation (``COCOeval``'s
            ``kpt_oks_sigmas``); default :func:`default_sigmas`: COCO's 17 when K is 17,
            else :data:`UNIFORM_SIGMA` each (a config's null: the training data's
            ``kpt_oks_sigmas`` where it gives them).
        kpt_dims: the numbers per keypoint of the YOLO label lines ``predict --save-txt``
            writes: 3 (``x y v``, ``v`` the predicted visibility) or 2 (``x y``), as an
            Ultralytics pose set's ``kpt_shape: [K, D]``, so the lines read back under it;
            ``None``: the training data's (2 for a ``[K, 2]`` set, else 3). Predictions
            always carry the visibility.
        kpt_convs: 3x3 convs of the keypoint tower, on the box tower's output.
        kpt_loss_weight: factor of the ``kpt`` loss term.
        vis_loss_weight: factor of the ``kpt_vis`` loss term.
        **fcos_args: the other arguments of :class:`~visionkit.models.heads.fcos.FCOSHead`.
    """

    task: ClassVar[str] = "keypoints"
    #: loss terms learnt from images that carry more than boxes (epoch means: engine/system.py)
    term_labels: ClassVar[dict[str, str]] = {"kpt": "keypoints", "kpt_vis": "keypoints"}
    reads: ClassVar[str] = "neck"
    _name: ClassVar[str] = "fcos_keypoints"

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int | None = None,
        num_keypoints: int | None = None,
        keypoint_names: list[str] | None = None,
        skeleton: list[list[int]] | None = None,
        kpt_oks_sigmas: list[float] | None = None,
        kpt_dims: int | None = None,
        kpt_convs: int = 2,
        kpt_loss_weight: float = 1.0,
        vis_loss_weight: float = 0.5,
        **fcos_args: Any,
    ) -> None:
        super().__init__(in_channels, strides, num_classes, **fcos_args)
        name = self._name
        if num_keypoints is None:
            num_keypoints = len(keypoint_names) if keypoint_names else len(COCO_SIGMAS)
        if num_keypoints < 1 or kpt_convs < 0:
            raise ValueError(
                f"{name}: num_keypoints must be >= 1 and kpt_convs >= 0, got {num_keypoints}, "
                f"{kpt_convs}"
            )
        if keypoint_names is not None and len(keypoint_names) != num_keypoints:
            raise ValueError(
                f"{name}: keypoint_names has {len(keypoint_names)} names for num_keypoints "
                f"{num_keypoints}"
            )
        bad = [
            p for p in skeleton or [] if len(p) != 2 or not all(1 <= i <= num_keypoints for i in p)
        ]
        if bad:
            raise ValueError(
                f"{name}: skeleton pairs {bad} are not 1-based keypoint indices in "
                f"1..{num_keypoints}"
            )
        if kpt_dims not in (None, 2, 3):
            raise ValueError(
                f"{name}: kpt_dims must be 2 (x y per keypoint) or 3 (x y v), got {kpt_dims}"
            )
        sigmas = default_sigmas(num_keypoints) if kpt_oks_sigmas is None else kpt_oks_sigmas
        if len(sigmas) != num_keypoints or any(s <= 0 for s in sigmas):
            raise ValueError(
                f"{name}: kpt_oks_sigmas needs {num_keypoints} positive values, got {sigmas}"
            )
        self.num_keypoints = int(num_keypoints)
        self.keypoint_names = list(keypoint_names or map(str, range(num_keypoints)))
        self.skeleton = [list(p) for p in skeleton or []]
        self.kpt_oks_sigmas = [float(s) for s in sigmas]
        self.kpt_dims = 3 if kpt_dims is None else int(kpt_dims)
        self.kpt_loss_weight, self.vis_loss_weight = kpt_loss_weight, vis_loss_weight
        self.kpt_tower, self.kpt_pred = self.point_branch(kpt_convs, 3 * num_keypoints)
        self.kpt_scales = nn.Parameter(torch.ones(len(self.strides)))
        for module in [*self.kpt_tower.modules(), self.kpt_pred]:
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """FCOS's outputs plus ``keypoint_offsets`` fp32 ``[B, P, K, 2]`` (pixels from each
        point) and ``keypoint_logits`` ``[B, P, K]`` (visibility)."""
        outputs, box_feats = self.forward_with_box_features(features)
        offsets, logits = [], []
        k = self.num_keypoints
        for level, feat in enumerate(box_feats):
            raw = self.kpt_pred(self.kpt_tower(feat))  # [B, 3K, H, W]
            scale = self.kpt_scales[level] * self.strides[level]
            offsets.append(raw[:, : 2 * k].float() * scale)
            logits.append(raw[:, 2 * k :])
        flat = flatten_levels(offsets)  # [B, P, 2K]
        outputs["keypoint_offsets"] = flat.reshape(flat.shape[0], flat.shape[1], k, 2)
        outputs["keypoint_logits"] = flatten_levels(logits)  # [B, P, K]
        return outputs

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        """FCOS's ``cls`` / ``box`` / ``ctr`` and the keypoint terms ``kpt`` (L1 in strides)
        and ``kpt_vis`` (visibility BCE), in fp32."""
        with torch.autocast(device_type=outputs["cls_logits"].device.type, enabled=False):
            unpacked = unpack_targets(
                targets, outputs["cls_logits"].shape[0], outputs["points"].device
            )
            zero = {
                "kpt": zero_loss(outputs["keypoint_offsets"]),
                "kpt_vis": zero_loss(outputs["keypoint_logits"]),
            }
            if unpacked is None:
                return {**self._zero_detection_losses(outputs), **zero}
            assigned = self.assign_batch(outputs, unpacked)
            losses = self._detection_losses(outputs, unpacked, assigned)
            if targets.get("keypoints") is None:
                return {**losses, **zero}
            return {**losses, **self._keypoint_losses(outputs, targets, unpacked, assigned)}

    def _keypoint_losses(
        self,
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Any],
        unpacked: DetectionTargets,
        assigned: FCOSTargets,
    ) -> dict[str, Tensor]:
        offsets = outputs["keypoint_offsets"].float()  # [B, P, K, 2]
        logits = outputs["keypoint_logits"].float()  # [B, P, K]
        device, (batch_size, num_points, k) = offsets.device, logits.shape
        has = targets.get("has_keypoints")
        has = [True] * batch_size if has is None else [bool(h) for h in has]
        true = offsets.new_zeros(batch_size, num_points, k, 3)
        for i, points in enumerate(targets["keypoints"]):
            points = torch.as_tensor(points, dtype=torch.float32, device=device)
            if points.numel() and points.shape[1:] != (k, 3):
                raise ValueError(
                    f"{self._name}: image {i} carries keypoints of shape "
                    f"{tuple(points.shape)}; this head predicts num_keypoints={k} per object "
                    "(set model.heads.<name>.num_keypoints to the dataset's)"
                )
            if len(points) != len(unpacked.boxes[i]):
                raise ValueError(
                    f"{self._name}: image {i} has {len(points)} keypoint rows for "
                    f"{len(unpacked.boxes[i])} boxes"
                )
            matched = assigned.matched[i]
            if has[i] and len(points):
                true[i] = torch.where(
                    (matched >= 0)[:, None, None], points[matched.clamp(min=0)], true[i]
                )
        positive = (assigned.matched >= 0) & torch.tensor(has, device=device)[:, None]
        strides = outputs["point_strides"].float()[None, :, None, None]
        target = (true[..., :2] - outputs["points"].float()[None, :, None, :]) / strides
        error = F.l1_loss(offsets / strides, target, reduction="none").sum(-1)  # [B, P, K]
        weight = centerness_targets(assigned.ltrb)[..., None] * (true[..., 2] > 0)
        weight = weight * positive[..., None]
        kpt_loss = (error * weight).sum() / weight.sum().clamp(min=1e-6)
        bce = F.binary_cross_entropy_with_logits(
            logits, (true[..., 2] == 2).float(), reduction="none"
        )
        vis_loss = (bce * positive[..., None]).sum() / (positive.sum() * k).clamp(min=1)
        return {
            "kpt": kpt_loss * self.kpt_loss_weight + zero_loss(offsets),
            "kpt_vis": vis_loss * self.vis_loss_weight + zero_loss(logits),
        }

    @torch.no_grad()
    def postprocess(
        self,
        outputs: Mapping[str, Tensor],
        image_sizes: Sizes,
        orig_sizes: Sizes | None = None,
    ) -> list[dict[str, Any]]:
        """FCOS's detections, each with ``keypoints`` float ``[N, K, 3]``: x, y (pixel
        indices; with ``orig_sizes`` rescaled per axis about pixel centres, ``(x + 0.5) *
        orig / image_size - 0.5``, the inverse of training's resize) and the
        visibility probability; ``keypoint_names`` and ``skeleton`` (tuples) name and join
        them."""
        offsets = outputs["keypoint_offsets"].float()
        visible = outputs["keypoint_logits"].float().sigmoid()
        points = outputs["points"].float()
        batch_size = offsets.shape[0]
        sizes = as_sizes(image_sizes, batch_size)
        originals = as_sizes(orig_sizes, batch_size)
        results = []
        for i, (prediction, index) in enumerate(self.detect(outputs, image_sizes, orig_sizes)):
            xy = points[index][:, None, :] + offsets[i, index]  # [N, K, 2]
            if originals:  # pixel indices: scaled about pixel centres, as in training
                (h, w), (oh, ow) = sizes[i], originals[i]
                xy = scale_about_pixel_centres(xy, xy.new_tensor([ow / w, oh / h]))
            prediction["keypoints"] = torch.cat([xy, visible[i, index][..., None]], dim=-1)
            # tuples: not per-detection lists (filters of detections take those apart)
            prediction["keypoint_names"] = tuple(self.keypoint_names)
            prediction["skeleton"] = tuple(tuple(pair) for pair in self.skeleton)
            results.append(prediction)
        return results


def keypoint_sigmas(head: nn.Module) -> Sequence[float]:
    """The OKS sigmas an evaluator of ``head`` uses."""
    return getattr(head, "kpt_oks_sigmas", None) or default_sigmas(head.num_keypoints)
