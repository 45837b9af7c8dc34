"""FCOS: the shared detection-head contract, target assignment on hand-made cases, and a small
end-to-end overfit with the built-in CNN and the FPN neck."""

from __future__ import annotations

import math

import pytest
import torch
from detection_tester import DetectionHeadTester
from torchvision.ops import box_iou

from visionkit.models.backbones import create_backbone
from visionkit.models.heads._utils import DetectionTargets, grid_points
from visionkit.models.heads.fcos import (
    FCOSHead,
    centerness_targets,
    fcos_scale_ranges,
    match_fcos_points,
)
from visionkit.models.necks import FPN


class TestFCOSContract(DetectionHeadTester):
    name = "fcos"
    head_kwargs = {"num_convs": 2}


# ---- outputs ---------------------------------------------------------------------------------
def test_points_strides_and_positive_distances():
    head = FCOSHead(in_channels=[16, 16], strides=[8, 16], num_classes=2, num_convs=1)
    out = head([torch.randn(1, 16, 4, 6), torch.randn(1, 16, 2, 3)])
    assert out["points"].shape == (24 + 6, 2)
    assert out["point_strides"].tolist() == [8.0] * 24 + [16.0] * 6
    assert out["points"][:7].tolist() == [[4, 4], [12, 4], [20, 4], [28, 4], [36, 4], [44, 4]] + [
        [4, 12]
    ]
    assert out["points"][24].tolist() == [8, 8]  # first point of the stride-16 level
    assert out["centerness"].shape == (1, 30)
    assert (out["bbox_regression"] > 0).all()


def test_classifier_bias_uses_the_prior_probability():
    head = FCOSHead(in_channels=[16], strides=[8], num_classes=2, num_convs=1, prior_prob=0.02)
    out = head([torch.zeros(1, 16, 2, 2)])
    torch.testing.assert_close(out["cls_logits"].sigmoid(), torch.full((1, 4, 2), 0.02))


def test_builder_validation():
    with pytest.raises(ValueError, match="all equal"):
        FCOSHead(in_channels=[16, 32], strides=[8, 16], num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        FCOSHead(in_channels=[16], strides=[8])
    with pytest.raises(ValueError, match=r"norm must be one of \['group', 'batch', 'none'\]"):
        FCOSHead(in_channels=[16], strides=[8], num_classes=1, norm="layer")
    head = FCOSHead(in_channels=[16], strides=[8], class_names=["cat", "dog"])
    assert isinstance(head, FCOSHead) and head.num_classes == 2
    with pytest.raises(ValueError, match="features|feature maps"):
        head([torch.zeros(1, 16, 2, 2)] * 2)


def test_group_norm_groups_fit_the_width():
    head = FCOSHead(in_channels=[48], strides=[8], num_classes=1, num_convs=1)
    assert head.cls_tower[1].num_groups == 16


@pytest.mark.parametrize("norm, kind", [("batch", torch.nn.BatchNorm2d), ("none", None)])
def test_tower_norm_batch_or_none(norm, kind):
    """``norm: batch`` puts BatchNorm after each tower conv, ``none`` nothing; both train."""
    head = FCOSHead(in_channels=[16], strides=[8], num_classes=1, num_convs=2, norm=norm)
    layers = [type(m) for m in head.cls_tower]
    expected = [torch.nn.Conv2d, kind, torch.nn.ReLU] * 2
    assert layers == [k for k in expected if k is not None]
    out = head([torch.rand(2, 16, 4, 4)])
    assert out["cls_logits"].shape == (2, 16, 1)


# ---- target assignment -----------------------------------------------------------------------
def test_scale_ranges_from_strides():
    assert fcos_scale_ranges([8, 16, 32, 64, 128]).tolist() == [
        [0, 64],
        [64, 128],
        [128, 256],
        [256, 512],
        [512, math.inf],
    ]
    assert fcos_scale_ranges([8, 16, 32]).tolist() == [[0, 64], [64, 128], [128, math.inf]]


def _assign(head, points, point_strides, boxes, labels):
    """The head's per-point labels for one image (the batch entry point on a batch of one)."""
    targets = DetectionTargets([boxes], [labels], torch.tensor([True]))
    outputs = {"points": points, "point_strides": point_strides}
    return head.assign_batch(outputs, targets).labels[0]


def _one_level(size: int = 8, stride: int = 8):
    points, strides = grid_points([(size, size)], [stride])
    ranges = torch.tensor([[0.0, math.inf]]).expand(len(points), 2)
    return points, ranges, strides


def test_single_box_positives_and_ltrb_targets():
    points, ranges, strides = _one_level()
    box = torch.tensor([[10.0, 10.0, 40.0, 30.0]])
    matched, ltrb = match_fcos_points(points, ranges, strides, box, 0.0)
    x, y = points[:, 0], points[:, 1]
    inside = (x > 10) & (x < 40) & (y > 10) & (y < 30)
    assert inside.sum() == 4 * 3  # x in 12, 20, 28, 36; y in 12, 20, 28
    assert torch.equal(matched >= 0, inside)
    assert (matched[inside] == 0).all()
    expected = torch.stack([x - 10, y - 10, 40 - x, 30 - y], dim=1)
    torch.testing.assert_close(ltrb[inside], expected[inside])


def test_point_in_two_boxes_goes_to_the_smaller():
    points, ranges, strides = _one_level()
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [16.0, 16.0, 40.0, 40.0]])
    matched, ltrb = match_fcos_points(points, ranges, strides, boxes, 0.0)
    x, y = points[:, 0], points[:, 1]
    in_small = (x > 16) & (x < 40) & (y > 16) & (y < 40)
    assert (matched[in_small] == 1).all() and (matched[~in_small] == 0).all()
    torch.testing.assert_close(ltrb[in_small, 0], x[in_small] - 16)
    # Order of the boxes does not matter.
    flipped, _ = match_fcos_points(points, ranges, strides, boxes.flip(0), 0)
    assert torch.equal(flipped, 1 - matched)


def test_scale_ranges_send_a_big_box_to_the_coarse_level():
    head = FCOSHead(in_channels=[8, 8, 8], strides=[8, 16, 32], num_classes=2, num_convs=0)
    points, point_strides = grid_points([(64, 64), (32, 32), (16, 16)], [8, 16, 32])
    big = torch.tensor([[0.0, 0.0, 512.0, 512.0]])  # every inside point has max(ltrb) >= 256
    labels = _assign(head, points, point_strides, big, torch.tensor([1]))
    assert (labels[point_strides != 32] == -1).all()
    assert (labels[point_strides == 32] == 1).sum() == 2 * 2  # centre region 256 ± 48
    small = torch.tensor([[100.0, 100.0, 130.0, 124.0]])  # max(ltrb) < 64: finest level
    labels = _assign(head, points, point_strides, small, torch.tensor([0]))
    assert (labels >= 0).any() and (labels[point_strides != 8] == -1).all()


def test_centre_sampling_excludes_points_near_the_border():
    points, ranges, strides = _one_level()
    box = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    everywhere, _ = match_fcos_points(points, ranges, strides, box, 0.0)
    assert (everywhere == 0).all()  # all 64 points lie inside the box
    centre, _ = match_fcos_points(points, ranges, strides, box, 1.5)
    x, y = points[:, 0], points[:, 1]
    expected = (x > 20) & (x < 44) & (y > 20) & (y < 44)  # 32 ± 1.5 * 8
    assert expected.sum() == 4 and torch.equal(centre == 0, expected)


def test_no_boxes_all_background_and_centerness_targets():
    points, ranges, strides = _one_level()
    matched, _ = match_fcos_points(points, ranges, strides, torch.zeros(0, 4))
    assert (matched == -1).all()
    ctr = centerness_targets(torch.tensor([[4.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0, 1.0]]))
    torch.testing.assert_close(ctr, torch.tensor([0.5, 1.0]))


def test_loss_vanishes_at_perfect_predictions():
    head = FCOSHead(in_channels=[8], strides=[8], num_classes=2, num_convs=0)
    out = head([torch.zeros(1, 8, 8, 8)])
    boxes, labels = torch.tensor([[6.0, 10.0, 40.0, 30.0]]), torch.tensor([1])
    assigned = _assign(head, out["points"], out["point_strides"], boxes, labels)
    positive = assigned >= 0
    assert positive.sum() > 1
    x, y = out["points"].unbind(1)
    exact = torch.stack([x - 6, y - 10, 40 - x, 30 - y], dim=1).clamp(min=1.0)[None]
    cls = torch.full((1, 64, 2), -30.0)
    cls[0, positive, 1] = 30.0
    perfect = {**out, "cls_logits": cls, "bbox_regression": exact}
    targets = {"boxes": [boxes], "labels": [labels]}
    losses = head.loss(perfect, targets)
    assert losses["cls"] < 1e-6 and losses["box"] < 1e-5, losses
    swapped = head.loss({**perfect, "bbox_regression": exact[..., [2, 1, 0, 3]]}, targets)
    assert swapped["box"] > 0.05, swapped


def test_iou_quality_learns_the_iou_of_the_predicted_box_and_box_loss_weight_scales():
    """``quality="iou"``: the ``ctr`` term's target at a positive point is the IoU of the box
    predicted there with its true box (a perfect box: 1; a box twice as wide: 0.5), not
    the point's centerness; ``box_loss_weight`` multiplies the ``box`` term only."""
    kwargs = {"in_channels": [8], "strides": [8], "num_classes": 1, "num_convs": 0}
    centred, iou = FCOSHead(**kwargs), FCOSHead(**kwargs, quality="iou")
    out = centred([torch.zeros(1, 8, 8, 8)])
    boxes, labels = torch.tensor([[8.0, 8.0, 48.0, 40.0]]), torch.tensor([0])
    positive = _assign(centred, out["points"], out["point_strides"], boxes, labels) >= 0
    x, y = out["points"].unbind(1)
    exact = torch.stack([x - 8, y - 8, 48 - x, 40 - y], dim=1).clamp(min=1.0)[None]
    wide = exact * torch.tensor([2.0, 1.0, 2.0, 1.0])  # twice as wide, same centre: IoU 0.5
    targets = {"boxes": [boxes], "labels": [labels]}
    for regression, true_iou in ((exact, 1.0), (wide, 0.5)):
        for logit in (-2.0, 0.0, 2.0):
            ctr = torch.full((1, 64), logit)
            outputs = {**out, "bbox_regression": regression, "centerness": ctr}
            expected = torch.nn.functional.binary_cross_entropy_with_logits(
                torch.tensor(logit), torch.tensor(true_iou)
            )
            got = iou.loss(outputs, targets)["ctr"]
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
            if logit != 0.0:  # at logit 0 the BCE is log 2 whatever the target
                assert not torch.allclose(centred.loss(outputs, targets)["ctr"], got)
    assert positive.sum() > 1
    weighted = FCOSHead(**kwargs, box_loss_weight=2.5)
    weighted.load_state_dict(centred.state_dict())
    outputs = {**out, "bbox_regression": wide}
    plain, scaled = centred.loss(outputs, targets), weighted.loss(outputs, targets)
    torch.testing.assert_close(scaled["box"], 2.5 * plain["box"])
    torch.testing.assert_close(scaled["cls"], plain["cls"])
    with pytest.raises(ValueError, match="quality must be one of"):
        FCOSHead(**kwargs, quality="giou")
    with pytest.raises(ValueError, match="box_loss_weight must be >= 0"):
        FCOSHead(**kwargs, box_loss_weight=-1.0)


def test_box_loss_picks_torchvisions_iou_loss():
    """``box_loss``: GIoU (default), DIoU or CIoU of the box at each positive point; all vanish
    for the exact box, and they differ for a box off its centre (DIoU adds the centre distance,
    CIoU also the aspect ratio)."""
    kwargs = {"in_channels": [8], "strides": [8], "num_classes": 1, "num_convs": 0}
    heads = {name: FCOSHead(**kwargs, box_loss=name) for name in ("giou", "diou", "ciou")}
    out = heads["giou"]([torch.zeros(1, 8, 8, 8)])
    boxes, labels = torch.tensor([[8.0, 8.0, 48.0, 40.0]]), torch.tensor([0])
    targets = {"boxes": [boxes], "labels": [labels]}
    x, y = out["points"].unbind(1)
    exact = torch.stack([x - 8, y - 8, 48 - x, 40 - y], dim=1).clamp(min=1.0)[None]
    shifted = exact * torch.tensor([0.5, 1.0, 1.5, 1.0])  # as wide, moved right; IoU < 1
    for head in heads.values():
        head.load_state_dict(heads["giou"].state_dict())
        loss = head.loss({**out, "bbox_regression": exact}, targets)["box"]
        assert float(loss) < 1e-5, head.box_loss
    losses = {
        name: float(head.loss({**out, "bbox_regression": shifted}, targets)["box"])
        for name, head in heads.items()
    }
    assert losses["giou"] > 0.05 and losses["diou"] > losses["giou"], losses
    assert losses["ciou"] >= losses["diou"] - 1e-6, losses
    with pytest.raises(ValueError, match=r"box_loss must be one of \['giou', 'diou', 'ciou'\]"):
        FCOSHead(**kwargs, box_loss="l1")


# ---- end to end ------------------------------------------------------------------------------
def test_overfit_two_boxes_with_simple_cnn_and_fpn():
    torch.manual_seed(0)
    backbone = create_backbone("simple_cnn", out_indices=(2, 3, 4), batch_norm=False)
    neck = FPN(backbone.out_channels, backbone.strides, out_channels=32)
    head = FCOSHead(neck.out_channels, neck.strides, num_classes=2, num_convs=2)
    model = torch.nn.ModuleList([backbone, neck, head])
    gt_boxes = torch.tensor([[6.0, 8.0, 30.0, 36.0], [34.0, 26.0, 60.0, 58.0]])
    gt_labels = torch.tensor([0, 1])
    image = torch.zeros(1, 3, 64, 64)
    image[0, 0, 8:36, 6:30] = 1.0
    image[0, 2, 26:58, 34:60] = 1.0
    targets = {"boxes": [gt_boxes], "labels": [gt_labels], "has_boxes": torch.tensor([True])}
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(120):
        losses = head.loss(head(neck(backbone(image))), targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = head.postprocess(head(neck(backbone(image))), [(64, 64)])[0]
    for box, label in zip(gt_boxes, gt_labels, strict=True):
        same_class = (pred["labels"] == label).nonzero()
        assert len(same_class), pred
        top = pred["boxes"][same_class[0]]  # the highest-scoring detection of that class
        assert box_iou(box[None], top).item() > 0.5, (box, pred)


def test_boxes_at_the_images_edge_stay_on_the_originals_edge():
    """A box to the right edge of a 21 px wide input, scaled to 914 px, ended at 914.00006
    (float32 rounding): past the image in predictions.json."""
    from visionkit.models.heads._utils import rescale_boxes

    boxes = torch.tensor([[0.0, 0.0, 21.0, 21.0]])
    assert rescale_boxes(boxes, (21, 21), (914, 914)).tolist() == [[0.0, 0.0, 914.0, 914.0]]
