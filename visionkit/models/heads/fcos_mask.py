"""FCOS with a prototype mask branch: dense single-stage instance segmentation (YOLACT-style,
Bolya et al., 2019, on FCOS's points).

A small *protonet* on the finest pyramid level (P3, stride 8) predicts ``K`` prototype masks
at twice that resolution (stride ``mask_stride = 4``); the box tower predicts ``K`` mask
coefficients per point (``tanh``). The mask of a detection is
``sigmoid(coefficients @ prototypes)``, cropped to its box. Everything else — towers, target
assignment, the ``cls`` / ``box`` / ``ctr`` losses and the box decoding — is FCOS's
(:class:`~visionkit.models.heads.fcos.FCOSHead`), so the mask branch costs the protonet and one conv.

Mask loss: for the positive points of the images that carry masks (at most
``mask_positives_per_img`` per image, drawn at random beyond that), BCE between the predicted
mask and the point's ground-truth instance mask, area-averaged to the prototype resolution,
over the pixels that overlap the ground-truth box, divided by their number (the box area, as
YOLACT) and averaged over the points.

>>> import torch
>>> head = FCOSMaskHead(in_channels=[32, 32], strides=[8, 16], num_classes=2, num_convs=1)
>>> out = head([torch.rand(2, 32, 8, 8), torch.rand(2, 32, 4, 4)])
>>> out["mask_coeffs"].shape, out["prototypes"].shape
(torch.Size([2, 80, 16]), torch.Size([2, 16, 16, 16]))
>>> mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
>>> mask[0, 8:48, 8:40] = 1
>>> batch = {"boxes": [torch.tensor([[8.0, 8.0, 40.0, 48.0]])] * 2,
...          "labels": [torch.tensor([1])] * 2, "masks": [mask, mask]}
>>> sorted(head.loss(out, batch))
['box', 'cls', 'ctr', 'mask']
>>> pred = head.eval().postprocess(out, [(64, 64), (64, 64)], orig_sizes=[(128, 96)] * 2)[0]
>>> pred["masks"].dtype, pred["masks"].shape[1:]
(torch.bool, torch.Size([128, 96]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.models.heads._utils import (
    DetectionTargets,
    Sizes,
    as_sizes,
    conv_tower,
    flatten_levels,
    unpack_targets,
    zero_loss,
)
from visionkit.models.heads.fcos import FCOSHead, FCOSTargets
from visionkit.registry import HEADS

MASK_CHUNK = 4  # detections whose full-size masks are decoded at once in postprocess


def mask_targets(masks: Tensor, size: Sequence[int], stride: int) -> Tensor:
    """Instance masks ``[N, H, W]`` (any dtype, 0/1) of the batch tensor, as float fractions
    ``[N, h, w]`` of a grid of ``stride``-pixel cells: padded with zeros (or cropped) to
    ``(h * stride, w * stride)``, then averaged over each ``stride`` × ``stride`` cell."""
    h, w = int(size[0]), int(size[1])
    masks = masks.float()[:, : h * stride, : w * stride]
    pad_h, pad_w = h * stride - masks.shape[1], w * stride - masks.shape[2]
    masks = F.pad(masks, (0, pad_w, 0, pad_h))
    return F.avg_pool2d(masks[:, None], stride)[:, 0] if len(masks) else masks.new_zeros(0, h, w)


@HEADS.register("fcos_mask")
class FCOSMaskHead(FCOSHead):
    """FCOS with a prototype mask branch on a neck's levels (all of ``in_channels`` equal,
    e.g. an FPN's; the first level feeds the protonet).

    See the module docstring for the mask branch and its loss.

    Args:
        in_channels: channels of each input level, all equal (e.g. an FPN neck's).
        strides: stride of each input level; the prototypes have stride ``strides[0] / 2``.
        num_classes: number of object classes C (no background class); ``None`` takes the
            number of ``class_names``.
        num_prototypes: prototype masks K (and mask coefficients per point).
        proto_channels: width of the protonet.
        proto_convs: 3x3 convs of the protonet on the finest level, before its 2× upsampling
            (followed by one 3x3 conv and a 1x1 conv to K prototypes, ReLU'd).
        mask_loss_weight: factor of the ``mask`` loss term.
        mask_positives_per_img: most positive points per image in the mask loss.
        mask_thresh: probability above which a mask pixel is foreground in postprocess.
        **fcos_args: the other arguments of :class:`~visionkit.models.heads.fcos.FCOSHead`
            (they are config keys of ``fcos_mask`` too: the registry reads them from there).

    Example:
        >>> import torch
        >>> head = FCOSMaskHead(in_channels=[16], strides=[8], num_classes=2, num_convs=1)
        >>> out = head([torch.rand(1, 16, 4, 4)])
        >>> head.mask_stride, tuple(out["prototypes"].shape), tuple(out["mask_coeffs"].shape)
        (4, (1, 16, 8, 8), (1, 16, 16))
    """

    task: ClassVar[str] = "instance"
    #: loss terms learnt from images that carry more than boxes (epoch means: engine/system.py)
    term_labels: ClassVar[dict[str, str]] = {"mask": "masks"}
    reads: ClassVar[str] = "neck"
    _name: ClassVar[str] = "fcos_mask"

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int | None = None,
        num_prototypes: int = 16,
        proto_channels: int = 64,
        proto_convs: int = 2,
        mask_loss_weight: float = 1.0,
        mask_positives_per_img: int = 64,
        mask_thresh: float = 0.5,
        **fcos_args: Any,
    ) -> None:
        super().__init__(in_channels, strides, num_classes, **fcos_args)
        if num_prototypes < 1 or proto_channels < 1 or proto_convs < 0:
            raise ValueError(
                "fcos_mask: num_prototypes and proto_channels must be >= 1 and proto_convs "
                f">= 0, got {num_prototypes}, {proto_channels}, {proto_convs}"
            )
        if mask_positives_per_img < 1 or mask_loss_weight < 0 or not 0 < mask_thresh < 1:
            raise ValueError(
                "fcos_mask: mask_positives_per_img must be >= 1, mask_loss_weight >= 0 and "
                f"mask_thresh in (0, 1), got {mask_positives_per_img}, {mask_loss_weight}, "
                f"{mask_thresh}"
            )
        if self.strides[0] % 2:
            raise ValueError(f"fcos_mask: the finest stride must be even, got {self.strides[0]}")
        self.num_prototypes = num_prototypes
        self.mask_stride = self.strides[0] // 2
        self.mask_loss_weight = mask_loss_weight
        self.mask_positives_per_img = mask_positives_per_img
        self.mask_thresh = mask_thresh
        norm = fcos_args.get("norm", "group")
        width = proto_channels if proto_convs > 0 else self.in_channels
        self.protonet = nn.Sequential(
            conv_tower(self.in_channels, proto_channels, proto_convs, norm),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(width, proto_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(proto_channels, num_prototypes, 1),
            nn.ReLU(inplace=True),
        )
        self.mask_coeffs = nn.Conv2d(self.bbox_pred.in_channels, num_prototypes, 3, padding=1)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """FCOS's raw outputs (see :meth:`FCOSHead.forward`) plus ``mask_coeffs``
        ``[B, P, K]`` in ``[-1, 1]`` and ``prototypes`` ``[B, K, 2 * H_0, 2 * W_0]`` (>= 0,
        stride ``mask_stride``)."""
        outputs, box_feats = self.forward_with_box_features(features)
        coeffs = flatten_levels([self.mask_coeffs(f) for f in box_feats]).tanh()  # [B, P, K]
        outputs["mask_coeffs"] = coeffs
        outputs["prototypes"] = self.protonet(features[0])  # [B, K, h, w]
        return outputs

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        """FCOS's ``cls``, ``box`` and ``ctr`` terms, and ``mask`` (times
        ``mask_loss_weight``), all in fp32.

        ``targets["masks"][i]`` is a ``[N_i, H, W]`` 0/1 tensor at the batch tensor's size,
        one mask per box of ``targets["boxes"][i]``; images with ``has_masks`` (or
        ``has_boxes``) False add no mask loss. Without ``masks``, or without positive points
        in the images that have masks, ``mask`` is an exact 0 connected to the parameters.
        """
        with torch.autocast(device_type=outputs["cls_logits"].device.type, enabled=False):
            unpacked = unpack_targets(
                targets, outputs["cls_logits"].shape[0], outputs["points"].device
            )
            if unpacked is None:
                losses = self._zero_detection_losses(outputs)
                losses["mask"] = zero_loss(outputs["mask_coeffs"], outputs["prototypes"])
                return losses
            assigned = self.assign_batch(outputs, unpacked)
            losses = self._detection_losses(outputs, unpacked, assigned)
            mask = self._mask_loss(outputs, targets, unpacked, assigned)
            losses["mask"] = mask * self.mask_loss_weight
            return losses

    def _mask_loss(
        self,
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Any],
        unpacked: DetectionTargets,
        assigned: FCOSTargets,
    ) -> Tensor:
        coeffs = outputs["mask_coeffs"].float()  # [B, P, K]
        protos = outputs["prototypes"].float()  # [B, K, h, w]
        zero = zero_loss(coeffs, protos)
        masks = targets.get("masks")
        if masks is None:
            return zero
        batch_size, device = coeffs.shape[0], coeffs.device
        if len(masks) != batch_size:
            raise ValueError(f"targets have masks for {len(masks)} images, batch has {batch_size}")
        has = targets.get("has_masks")
        use = unpacked.valid.clone()
        if has is not None:
            use &= torch.as_tensor(has, dtype=torch.bool, device=device).reshape(batch_size)
        positive = (assigned.matched >= 0) & use[:, None]  # [B, P]
        counts = positive.sum(dim=1)
        if not bool(counts.any()):
            return zero

        # Ground truth at the prototype resolution, all images' instances concatenated.
        h, w = protos.shape[-2:]
        gt_masks, gt_boxes, offsets = [], [], []
        for i in range(batch_size):
            offsets.append(sum(len(m) for m in gt_masks))
            if not use[i]:
                continue
            inst = torch.as_tensor(masks[i], device=device)
            if inst.dim() != 3 or len(inst) != len(unpacked.boxes[i]):
                raise ValueError(
                    f"image {i}: masks of shape {tuple(inst.shape)} for "
                    f"{len(unpacked.boxes[i])} boxes; expected [N, H, W], one per box"
                )
            gt_masks.append(mask_targets(inst, (h, w), self.mask_stride))
            gt_boxes.append(unpacked.boxes[i])
        all_masks, all_boxes = torch.cat(gt_masks), torch.cat(gt_boxes)  # [M, h, w], [M, 4]

        # At most mask_positives_per_img positives per image (a random subset beyond that).
        num = min(int(counts.max()), self.mask_positives_per_img)
        if int(counts.max()) > num:
            priority = torch.where(positive, torch.rand(positive.shape, device=device), -1.0)
        else:
            priority = positive.float() - 0.5
        best, point = priority.topk(num, dim=1)  # [B, S]
        selected = best >= 0  # [B, S]
        instance = assigned.matched.gather(1, point) + torch.tensor(offsets, device=device)[:, None]
        instance = torch.where(selected, instance, 0)  # [B, S] into all_masks

        k = coeffs.shape[2]
        chosen = coeffs.gather(1, point[..., None].expand(-1, -1, k))  # [B, S, K]
        logits = torch.bmm(chosen, protos.flatten(2)).view(batch_size, num, h, w)
        bce = F.binary_cross_entropy_with_logits(logits, all_masks[instance], reduction="none")
        # Cells of the prototype grid that overlap the ground-truth box.
        x1, y1, x2, y2 = (all_boxes[instance] / self.mask_stride).unbind(dim=2)  # [B, S]
        xs = torch.arange(w, device=device, dtype=torch.float32)
        ys = torch.arange(h, device=device, dtype=torch.float32)
        in_x = (xs + 1 > x1[..., None]) & (xs < x2[..., None])  # [B, S, w]
        in_y = (ys + 1 > y1[..., None]) & (ys < y2[..., None])  # [B, S, h]
        crop = (in_y[..., :, None] & in_x[..., None, :]).float()  # [B, S, h, w]
        per_point = (bce * crop).sum(dim=(2, 3)) / crop.sum(dim=(2, 3)).clamp(min=1.0)
        return (per_point * selected).sum() / selected.sum() + zero

    @torch.no_grad()
    def postprocess(
        self,
        outputs: Mapping[str, Tensor],
        image_sizes: Sizes,
        orig_sizes: Sizes | None = None,
    ) -> list[dict[str, Any]]:
        """FCOS's detections (see :meth:`FCOSHead.postprocess`) with their masks.

        The mask of a detection is ``sigmoid(coeffs @ prototypes)``, bilinearly upsampled to
        the padded input (``mask_stride`` ×), cut to ``image_sizes[i]``, resized to
        ``orig_sizes[i]`` (bilinear), limited to the pixels whose centre lies in the
        detection's box, and thresholded at ``mask_thresh``.

        Returns:
            Per image ``{"boxes", "scores", "labels", "names"}`` as FCOS, and ``"masks"``: bool
            ``[K, H0, W0]`` at the original size (``image_sizes[i]`` without ``orig_sizes``).
        """
        detections = self.detect(outputs, image_sizes, orig_sizes)
        sizes = as_sizes(image_sizes, len(detections))
        originals = as_sizes(orig_sizes, len(detections)) or sizes
        with torch.autocast(device_type=outputs["cls_logits"].device.type, enabled=False):
            coeffs = outputs["mask_coeffs"].float()  # [B, P, K]
            protos = outputs["prototypes"].float()  # [B, K, h, w]
            results = []
            for i, (prediction, point) in enumerate(detections):
                prediction["masks"] = self.decode_masks(
                    coeffs[i, point], protos[i], prediction["boxes"], sizes[i], originals[i]
                )
                results.append(prediction)
        return results

    def decode_masks(
        self,
        coeffs: Tensor,
        prototypes: Tensor,
        boxes: Tensor,
        image_size: Sequence[int],
        orig_size: Sequence[int],
    ) -> Tensor:
        """Bool masks ``[N, H0, W0]`` of one image's detections (see :meth:`postprocess`).

        Args:
            coeffs: ``[N, K]`` mask coefficients of the detections.
            prototypes: ``[K, h, w]`` the image's prototypes.
            boxes: ``[N, 4]`` xyxy detection boxes at ``orig_size``.
            image_size: ``(H, W)`` of the image inside the batch tensor.
            orig_size: ``(H0, W0)`` of the original image.
        """
        (height, width), (orig_h, orig_w) = image_size, orig_size
        _, h, w = prototypes.shape
        out = torch.zeros((len(coeffs), orig_h, orig_w), dtype=torch.bool, device=coeffs.device)
        xs = torch.arange(orig_w, device=coeffs.device, dtype=torch.float32) + 0.5
        ys = torch.arange(orig_h, device=coeffs.device, dtype=torch.float32) + 0.5
        flat = prototypes.flatten(1)  # [K, h * w]
        for start in range(0, len(coeffs), MASK_CHUNK):
            part = slice(start, start + MASK_CHUNK)
            prob = (coeffs[part] @ flat).sigmoid().view(1, -1, h, w)
            size = (h * self.mask_stride, w * self.mask_stride)
            prob = F.interpolate(prob, size=size, mode="bilinear", align_corners=False)
            prob = prob[:, :, :height, :width]
            if (height, width) != (orig_h, orig_w):
                prob = F.interpolate(
                    prob, size=(orig_h, orig_w), mode="bilinear", align_corners=False
                )
            x1, y1, x2, y2 = boxes[part, :, None].unbind(dim=1)  # [n, 1] each
            in_x = (xs >= x1) & (xs <= x2)  # [n, W0]
            in_y = (ys >= y1) & (ys <= y2)  # [n, H0]
            out[part] = (prob[0] > self.mask_thresh) & in_y[:, :, None] & in_x[:, None, :]
        return out
