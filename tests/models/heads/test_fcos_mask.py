"""FCOS with a prototype mask branch: the shared detection-head contract (boxes-only batches),
the mask loss against a per-point reference, its zero cases, mask decoding in postprocess,
and a small end-to-end overfit of a rectangle and ellipses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from detection_tester import BOXES, DetectionHeadTester
from torchvision.ops import box_iou

import visionkit.models.heads
from visionkit.config import builder_schema
from visionkit.models.backbones import create_backbone
from visionkit.models.heads._utils import DetectionTargets, unpack_targets
from visionkit.models.heads.fcos_mask import FCOSMaskHead, mask_targets
from visionkit.models.necks import FPN
from visionkit.registry import HEADS

SMALL = {"num_convs": 2, "proto_channels": 16, "proto_convs": 1, "num_prototypes": 8}
H, W = 64, 96  # the tester's batch tensor


class TestFCOSMaskContract(DetectionHeadTester):
    name = "fcos_mask"
    head_kwargs = SMALL

    # The shared versions expect task "detection" and only [B, N, ...] batch outputs.
    def test_class_attributes_and_registry(self):
        head = self.make_head(class_names=["a", "b", "c"])
        assert (head.task, head.reads) == ("instance", "neck")
        assert head.num_classes == self.num_classes
        assert list(head.class_names) == ["a", "b", "c"]
        assert HEADS.component_class("fcos_mask") is FCOSMaskHead
        schema = builder_schema(HEADS, "fcos_mask")
        # FCOS's own arguments are config keys of fcos_mask too (read through **fcos_args).
        assert {"num_prototypes", "num_convs", "nms_thresh", "focal_gamma"} <= set(
            schema.model_fields
        )

    def test_output_shapes(self):
        head = self.make_head()
        out = head(self.make_features(batch_size=2))
        n = out["cls_logits"].shape[1]
        h, w = self.image_size
        assert n == sum(math.ceil(h / s) * math.ceil(w / s) for s in self.strides)
        assert out["cls_logits"].shape == (2, n, self.num_classes)
        assert out["bbox_regression"].shape == (2, n, 4)
        assert out["centerness"].shape == (2, n)
        assert out["mask_coeffs"].shape == (2, n, SMALL["num_prototypes"])
        assert head.mask_stride == 4
        assert out["prototypes"].shape == (2, SMALL["num_prototypes"], h // 4, w // 4)
        assert all(torch.isfinite(v).all() for v in out.values())
        assert out["mask_coeffs"].abs().max() <= 1 and out["prototypes"].min() >= 0


# ---- helpers ---------------------------------------------------------------------------------
def ellipse_in(box, size=(H, W)):
    """uint8 ``[H, W]``: the ellipse inscribed in an xyxy box (pixel centres)."""
    ys, xs = torch.meshgrid(torch.arange(size[0]) + 0.5, torch.arange(size[1]) + 0.5, indexing="ij")
    x1, y1, x2, y2 = box.tolist()
    inside = ((xs - (x1 + x2) / 2) / ((x2 - x1) / 2)) ** 2 + (
        (ys - (y1 + y2) / 2) / ((y2 - y1) / 2)
    ) ** 2 <= 1
    return inside.to(torch.uint8)


def rectangle_in(box, size=(H, W)):
    mask = torch.zeros(size, dtype=torch.uint8)
    x1, y1, x2, y2 = (round(v) for v in box.tolist())
    mask[y1:y2, x1:x2] = 1
    return mask


def mask_batch(has_masks=(True, True), has_boxes=None):
    """The tester's boxes, each with the ellipse inscribed in it as its mask."""
    n = len(has_masks)
    boxes = [BOXES[i % 2][0].clone() for i in range(n)]
    return {
        "boxes": boxes,
        "labels": [BOXES[i % 2][1].clone() for i in range(n)],
        "masks": [torch.stack([ellipse_in(b) for b in image]) for image in boxes],
        "has_boxes": torch.tensor(has_boxes or [True] * n),
        "has_masks": torch.tensor(has_masks),
    }


def make_head(**overrides):
    torch.manual_seed(0)
    kwargs = {**SMALL, **overrides}
    return FCOSMaskHead(in_channels=[32] * 3, strides=[8, 16, 32], num_classes=3, **kwargs)


def make_features(batch_size=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch_size, 32, math.ceil(H / s), math.ceil(W / s), generator=g)
        for s in (8, 16, 32)
    ]


def reference_mask_losses(head, out, targets):
    """Per image, the mask loss of each positive point, one point at a time."""
    coeffs, protos = out["mask_coeffs"].float(), out["prototypes"].float()
    s, (h, w) = head.mask_stride, protos.shape[-2:]
    per_image = []
    for i, boxes in enumerate(targets["boxes"]):
        losses = []
        if targets["has_masks"][i] and targets["has_boxes"][i]:
            one = DetectionTargets(
                [boxes], [torch.zeros(len(boxes), dtype=torch.long)], torch.tensor([True])
            )
            matched = head.assign_batch(out, one).matched[0]
            for point in (matched >= 0).nonzero()[:, 0].tolist():
                j = int(matched[point])
                padded = torch.zeros(h * s, w * s)
                padded[:H, :W] = targets["masks"][i][j].float()
                target = padded.view(h, s, w, s).mean(dim=(1, 3))
                x1, y1, x2, y2 = boxes[j].tolist()
                cols = torch.tensor([(c + 1) * s > x1 and c * s < x2 for c in range(w)])
                rows = torch.tensor([(r + 1) * s > y1 and r * s < y2 for r in range(h)])
                crop = rows[:, None] & cols[None, :]
                logits = (coeffs[i, point] @ protos[i].flatten(1)).view(h, w)
                losses.append(F.binary_cross_entropy_with_logits(logits[crop], target[crop]))
        per_image.append(torch.stack(losses) if losses else torch.zeros(0))
    return per_image


def assigned_targets(head, out, targets):
    unpacked = unpack_targets(targets, len(targets["boxes"]), torch.device("cpu"))
    return unpacked, head.assign_batch(out, unpacked)


def single_detection_outputs(head, box, point_xy=(28.0, 20.0)):
    """Outputs where exactly one stride-8 point (at ``point_xy``) detects class 1 with ``box``."""
    out = head(make_features(batch_size=1))
    points = out["points"]
    p = int(
        (
            (points - torch.tensor(point_xy)).abs().sum(1) + 1e3 * (out["point_strides"] != 8)
        ).argmin()
    )
    x, y = points[p].tolist()
    cls = torch.full_like(out["cls_logits"], -20.0)
    cls[0, p, 1] = 20.0
    ctr = torch.full_like(out["centerness"], 20.0)
    reg = torch.ones_like(out["bbox_regression"])
    reg[0, p] = torch.tensor([x - box[0], y - box[1], box[2] - x, box[3] - y])
    return {**out, "cls_logits": cls, "centerness": ctr, "bbox_regression": reg}, p


# ---- mask targets ----------------------------------------------------------------------------
def test_mask_targets_average_cells_and_pad_or_crop():
    mask = torch.zeros(1, 10, 13, dtype=torch.uint8)
    mask[0, 0:4, 0:4] = 1  # a full cell
    mask[0, 4:6, 4:8] = 1  # half of a cell
    mask[0, 8:10, 12] = 1  # 2 pixels of the padded last cell
    out = mask_targets(mask, (3, 4), 4)
    assert out.shape == (1, 3, 4) and out.dtype == torch.float32
    expected = torch.zeros(3, 4)
    expected[0, 0], expected[1, 1], expected[2, 3] = 1.0, 0.5, 2 / 16
    torch.testing.assert_close(out[0], expected)
    assert mask_targets(mask, (2, 2), 4).shape == (1, 2, 2)  # cropped
    assert mask_targets(mask[:0], (3, 4), 4).shape == (0, 3, 4)


# ---- loss ------------------------------------------------------------------------------------
def test_mask_loss_equals_the_per_point_reference_and_reaches_the_mask_branch():
    head = make_head()
    out = head(make_features())
    targets = mask_batch()
    losses = head.loss(out, targets)
    assert sorted(losses) == ["box", "cls", "ctr", "mask"]
    expected = torch.cat(reference_mask_losses(head, out, targets)).mean()
    assert losses["mask"].dtype == torch.float32 and losses["mask"] > 0.1
    torch.testing.assert_close(losses["mask"], expected)
    # Detection terms are FCOS's own.
    plain = head._detection_losses(out, *assigned_targets(head, out, targets))
    for key in ("cls", "box", "ctr"):
        torch.testing.assert_close(losses[key], plain[key])
    losses["mask"].backward()
    for module in (head.protonet, head.mask_coeffs, head.bbox_tower):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads), module


def test_mask_loss_weight_and_positive_cap():
    out_head = make_head()
    out = out_head(make_features())
    targets = mask_batch()
    base = out_head.loss(out, targets)["mask"]
    out_head.mask_loss_weight = 2.5
    torch.testing.assert_close(out_head.loss(out, targets)["mask"], 2.5 * base)
    out_head.mask_loss_weight = 1.0
    out_head.mask_positives_per_img = 1
    per_image = reference_mask_losses(out_head, out, targets)
    assert all(len(p) > 1 for p in per_image)
    capped = out_head.loss(out, targets)["mask"]
    # One random positive per image: the mean of one per-point loss of each image.
    candidates = (per_image[0][:, None] + per_image[1][None, :]) / 2
    assert (candidates - capped).abs().min() < 1e-5


def test_mask_loss_under_bf16_autocast_is_fp32():
    head = make_head()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(make_features())
        losses = head.loss(out, mask_batch())
        preds = head.eval().postprocess(out, [(H, W)] * 2)
    assert losses["mask"].dtype == torch.float32 and torch.isfinite(losses["mask"])
    assert losses["mask"] > 0
    assert all(p["masks"].dtype == torch.bool for p in preds)


def test_mask_loss_counts_only_pixels_that_overlap_the_box():
    head = make_head()
    out = head(make_features())
    targets = mask_batch()
    base = head.loss(out, targets)["mask"]
    outside = mask_batch()
    box = outside["boxes"][0][0]  # 4, 6, 30, 40: prototype cells x 1..7, y 1..9
    assert box.tolist() == [4.0, 6.0, 30.0, 40.0]
    outside["masks"][0][0, :, 32:] = 1
    outside["masks"][0][0, 40:, :] = 1
    outside["masks"][0][0, :4, :] = 1
    assert torch.equal(head.loss(out, outside)["mask"], base)
    inside = mask_batch()
    inside["masks"][0][0, 8:12, 6:10] = 1 - inside["masks"][0][0, 8:12, 6:10]
    assert not torch.equal(head.loss(out, inside)["mask"], base)


@pytest.mark.parametrize("case", ["no_masks_key", "has_masks_false", "no_positives", "no_boxes"])
def test_mask_term_is_a_connected_zero(case):
    head = make_head()
    targets = mask_batch()
    if case == "no_masks_key":
        del targets["masks"], targets["has_masks"]
    elif case == "has_masks_false":
        targets["has_masks"] = torch.tensor([False, False])
    elif case == "no_positives":
        targets["boxes"] = [torch.zeros(0, 4)] * 2
        targets["labels"] = [torch.zeros(0, dtype=torch.long)] * 2
        targets["masks"] = [torch.zeros(0, H, W, dtype=torch.uint8)] * 2
    else:
        targets["has_boxes"] = torch.tensor([False, False])
    losses = head.loss(head(make_features()), targets)
    assert losses["mask"].item() == 0.0 and losses["mask"].dtype == torch.float32
    sum(losses.values()).backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    assert all((p.grad == 0).all() for p in head.protonet.parameters())


def test_image_without_masks_does_not_change_the_mask_loss():
    head = make_head()
    feats = make_features()
    both = mask_batch(has_masks=(True, False))
    both["masks"][1] = torch.zeros(0, 1, 1, dtype=torch.uint8)  # unlabelled: not read
    alone = mask_batch(has_masks=(True,))
    with_second = head.loss(head(feats), both)
    first_only = head.loss(head([f[:1] for f in feats]), alone)
    torch.testing.assert_close(with_second["mask"], first_only["mask"])
    # Labelled with masks, the second image does count.
    assert not torch.equal(head.loss(head(feats), mask_batch())["mask"], with_second["mask"])


def test_masks_must_match_the_boxes():
    head = make_head()
    targets = mask_batch()
    targets["masks"][0] = targets["masks"][0][:1]
    with pytest.raises(ValueError, match="image 0: masks of shape"):
        head.loss(head(make_features()), targets)
    targets = mask_batch()
    targets["masks"] = targets["masks"][:1]
    with pytest.raises(ValueError, match="masks for 1 images"):
        head.loss(head(make_features()), targets)


# ---- postprocess -----------------------------------------------------------------------------
def test_postprocess_decodes_the_prototypes_inside_the_box():
    head = make_head(num_prototypes=2).eval()
    box = [4.0, 4.0, 60.0, 40.0]
    out, point = single_detection_outputs(head, box)
    protos = torch.full_like(out["prototypes"], -20.0)  # [1, 2, 16, 24]
    protos[0, 0, 2:6, 3:10] = 20.0  # pixels: rows 8..23, cols 12..39
    protos[0, 1] = 50.0  # weighs nothing
    coeffs = torch.zeros_like(out["mask_coeffs"])
    coeffs[0, point, 0] = 1.0
    out = {**out, "prototypes": protos, "mask_coeffs": coeffs}
    pred = head.postprocess(out, [(H, W)])[0]
    torch.testing.assert_close(pred["boxes"], torch.tensor([box]))
    expected = torch.zeros(1, H, W, dtype=torch.bool)
    expected[0, 8:24, 12:40] = True
    expected[0, [8, 8, 23, 23], [12, 39, 12, 39]] = False  # bilinear rounds the corners
    assert pred["masks"].dtype == torch.bool and torch.equal(pred["masks"], expected)
    # Cropped to a narrower box.
    narrow, _ = single_detection_outputs(head, [4.0, 4.0, 30.0, 40.0])
    pred = head.postprocess({**narrow, "prototypes": protos, "mask_coeffs": coeffs}, [(H, W)])[0]
    assert torch.equal(pred["masks"], expected & (torch.arange(W) < 30))
    # At twice the original size, and for an image padded in the batch (cut to 40 × 50).
    pred = head.postprocess(out, [(H, W)], orig_sizes=[(2 * H, 2 * W)])[0]
    assert pred["masks"].shape == (1, 2 * H, 2 * W)
    big = expected[:, :, None, :, None].expand(1, H, 2, W, 2).reshape(1, 2 * H, 2 * W)
    assert (pred["masks"] ^ big).sum() <= 0.02 * big.sum()
    pred = head.postprocess(out, [(40, 50)])[0]
    assert pred["masks"].shape == (1, 40, 50)
    assert torch.equal(pred["masks"][0], expected[0, :40, :50] & (torch.arange(50) + 0.5 <= 50))


def test_postprocess_masks_have_the_original_size_and_lie_in_their_box():
    head = make_head(score_thresh=0.0, detections_per_img=5).eval()
    out = head(make_features())
    out["prototypes"] = torch.full_like(out["prototypes"], 5.0)  # every pixel foreground ...
    out["mask_coeffs"] = torch.ones_like(out["mask_coeffs"])  # ... so the box decides
    sizes, orig = [(H, W), (40, 50)], [(128, 48), (20, 150)]
    preds = head.postprocess(out, sizes, orig_sizes=orig)
    for pred, (oh, ow) in zip(preds, orig, strict=True):
        masks, boxes = pred["masks"], pred["boxes"]
        assert 0 < len(boxes) <= 5
        assert masks.shape == (len(boxes), oh, ow) and masks.dtype == torch.bool
        ys, xs = torch.arange(oh) + 0.5, torch.arange(ow) + 0.5
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.tolist(), strict=True):
            in_box = ((ys >= y1) & (ys <= y2))[:, None] & ((xs >= x1) & (xs <= x2))[None, :]
            assert mask.any() and torch.equal(mask, in_box)
    none = head.postprocess({**out, "cls_logits": out["cls_logits"] - 100}, sizes, orig)
    assert none[0]["masks"].shape == (0, 128, 48) and none[1]["masks"].shape == (0, 20, 150)


def test_postprocess_keeps_fcos_detections():
    head = make_head(score_thresh=0.0, detections_per_img=7).eval()
    out = head(make_features())
    preds = head.postprocess(out, [(H, W), (40, 50)])
    plain = super(FCOSMaskHead, head).postprocess(out, [(H, W), (40, 50)])
    for a, b in zip(preds, plain, strict=True):
        assert set(a) == {"boxes", "scores", "labels", "names", "masks"}
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(a[key], b[key])


# ---- builder ---------------------------------------------------------------------------------
def test_builder_validation_and_export():
    assert (
        "FCOSMaskHead" in visionkit.models.heads.__all__
        and "fcos_mask" in visionkit.models.heads.list_heads()
    )
    head = FCOSMaskHead(in_channels=[16], strides=[8], class_names=["a", "b"], num_convs=0)
    assert isinstance(head, FCOSMaskHead) and head.num_classes == 2
    for bad in (
        {"num_prototypes": 0},
        {"proto_convs": -1},
        {"mask_thresh": 1.0},
        {"mask_positives_per_img": 0},
        {"mask_loss_weight": -1.0},
    ):
        with pytest.raises(ValueError, match="fcos_mask"):
            FCOSMaskHead(in_channels=[16], strides=[8], num_classes=1, **bad)
    with pytest.raises(ValueError, match="stride must be even"):
        FCOSMaskHead(in_channels=[16], strides=[9], num_classes=1)


# ---- end to end ------------------------------------------------------------------------------
def test_overfit_a_rectangle_and_ellipses_with_simple_cnn_and_fpn():
    gt = [  # per image: (mask maker, box, label)
        [(rectangle_in, [6.0, 8.0, 38.0, 52.0], 0), (ellipse_in, [46.0, 10.0, 92.0, 58.0], 1)],
        [(ellipse_in, [16.0, 12.0, 72.0, 54.0], 1)],
    ]
    targets = {"boxes": [], "labels": [], "masks": [], "has_masks": torch.tensor([True, True])}
    images = torch.zeros(2, 3, H, W)
    for i, instances in enumerate(gt):
        boxes = torch.tensor([box for _, box, _ in instances])
        masks = torch.stack([make(b) for (make, _, _), b in zip(instances, boxes, strict=True)])
        targets["boxes"].append(boxes)
        targets["labels"].append(torch.tensor([label for *_, label in instances]))
        targets["masks"].append(masks)
        for mask, (_, _, label) in zip(masks, instances, strict=True):
            images[i, label] += mask.float()
    torch.manual_seed(0)
    backbone = create_backbone("simple_cnn", out_indices=(2, 3, 4), batch_norm=False)
    neck = FPN(backbone.out_channels, backbone.strides, out_channels=32)
    head = FCOSMaskHead(
        neck.out_channels, neck.strides, num_classes=2, num_convs=1, proto_channels=32,
        proto_convs=1, num_prototypes=8,
    )  # fmt: skip
    model = torch.nn.ModuleList([backbone, neck, head])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(60):
        losses = head.loss(head(neck(backbone(images))), targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append(losses["mask"].item())
    assert history[-1] < 0.5 * history[0], history
    model.eval()
    with torch.no_grad():
        preds = head.postprocess(head(neck(backbone(images))), [(H, W)] * 2)
    for pred, boxes, masks in zip(preds, targets["boxes"], targets["masks"], strict=True):
        for box, mask in zip(boxes, masks.bool(), strict=True):
            best = box_iou(box[None], pred["boxes"])[0].argmax()  # the detection of this object
            predicted = pred["masks"][best]
            iou = (predicted & mask).sum() / (predicted | mask).sum()
            assert iou > 0.7, (box, iou)
