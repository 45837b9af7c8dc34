"""RetinaNet: the shared detection-head contract, anchors, box coding, IoU matching on hand-made
cases, and a small end-to-end overfit with the built-in CNN and the FPN neck."""

from __future__ import annotations

import math

import pytest
import torch
from detection_tester import DetectionHeadTester
from torchvision.ops import box_iou

from visionkit.models.backbones import create_backbone
from visionkit.models.heads.retinanet import (
    MATCH_BACKGROUND,
    MATCH_IGNORE,
    RetinaNetHead,
    decode_boxes,
    encode_boxes,
    match_anchors,
)
from visionkit.models.necks import FPN


class TestRetinaNetContract(DetectionHeadTester):
    name = "retinanet"
    head_kwargs = {"num_convs": 2}


class TestRetinaNetGIoUContract(DetectionHeadTester):
    name = "retinanet"
    head_kwargs = {"num_convs": 1, "box_loss": "giou", "norm": "group"}


# ---- anchors and outputs ---------------------------------------------------------------------
def test_anchors_per_cell_sizes_ratios_and_order():
    head = RetinaNetHead(in_channels=[8, 8], strides=[8, 16], num_classes=2, num_convs=0)
    out = head([torch.zeros(1, 8, 2, 3), torch.zeros(1, 8, 1, 2)])
    anchors, strides = out["anchors"], out["anchor_strides"]
    assert head.num_anchors == 9 and anchors.shape == (9 * (6 + 2), 4)
    assert strides.tolist() == [8.0] * 54 + [16.0] * 18
    assert out["cls_logits"].shape == (1, 72, 2) and out["bbox_regression"].shape == (1, 72, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    torch.testing.assert_close(centres[:9], torch.tensor([[4.0, 4.0]] * 9))  # cell (0, 0)
    torch.testing.assert_close(centres[9:18], torch.tensor([[12.0, 4.0]] * 9))  # (0, 1)
    torch.testing.assert_close(centres[54], torch.tensor([8.0, 8.0]))  # first cell, stride 16
    w, h = (anchors[:, 2:] - anchors[:, :2]).unbind(1)
    k = torch.tensor([1.0, 2 ** (1 / 3), 2 ** (2 / 3)]).repeat(3)  # ratio-major, scale inner
    torch.testing.assert_close((w * h)[:9].sqrt(), 32 * k)  # base size 4 * stride
    torch.testing.assert_close((w * h)[54:63].sqrt(), 64 * k)
    torch.testing.assert_close((h / w)[:9], torch.tensor([0.5, 1.0, 2.0]).repeat_interleave(3))
    torch.testing.assert_close(anchors[3], torch.tensor([-12.0, -12.0, 20.0, 20.0]))


def test_classifier_bias_uses_the_prior_probability():
    head = RetinaNetHead(in_channels=[16], strides=[8], num_classes=2, num_convs=1, prior_prob=0.02)
    out = head([torch.zeros(1, 16, 2, 2)])
    torch.testing.assert_close(out["cls_logits"].sigmoid(), torch.full((1, 36, 2), 0.02))
    assert torch.equal(out["bbox_regression"], torch.zeros(1, 36, 4))
    assert abs(head.cls_tower[0].weight.std().item() - 0.01) < 2e-3


def test_builder_validation():
    with pytest.raises(ValueError, match="all equal"):
        RetinaNetHead(in_channels=[16, 32], strides=[8, 16], num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        RetinaNetHead(in_channels=[16], strides=[8])
    with pytest.raises(ValueError, match="box_loss"):
        RetinaNetHead(in_channels=[16], strides=[8], num_classes=1, box_loss="l1")
    with pytest.raises(ValueError, match="bg_iou_thresh"):
        RetinaNetHead(in_channels=[16], strides=[8], num_classes=1, bg_iou_thresh=0.6)
    with pytest.raises(ValueError, match="aspect_ratios"):
        RetinaNetHead(in_channels=[16], strides=[8], num_classes=1, aspect_ratios=())
    head = RetinaNetHead(in_channels=[16], strides=[8], class_names=["cat", "dog"], scales=(1.0,))
    assert isinstance(head, RetinaNetHead) and head.num_classes == 2 and head.num_anchors == 3
    with pytest.raises(ValueError, match="feature maps"):
        head([torch.zeros(1, 16, 2, 2)] * 2)


# ---- box coding ------------------------------------------------------------------------------
def test_box_coding_round_trip_and_known_deltas():
    g = torch.Generator().manual_seed(0)
    xy, wh = torch.rand(50, 2, generator=g) * 100, torch.rand(50, 2, generator=g) * 60 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    anchors = torch.cat([xy + 5, xy + 5 + wh.flip(1)], 1)
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, anchors), anchors), boxes)
    anchor, box = torch.tensor([[0.0, 0.0, 10.0, 20.0]]), torch.tensor([[5.0, 10.0, 25.0, 30.0]])
    torch.testing.assert_close(
        encode_boxes(box, anchor), torch.tensor([[1.0, 0.5, math.log(2), 0]])
    )
    huge = decode_boxes(torch.tensor([[0.0, 0.0, 50.0, 50.0]]), anchor)  # dw, dh clamped
    torch.testing.assert_close(huge[0, 2] - huge[0, 0], torch.tensor(10 * 1000 / 16))


# ---- matching --------------------------------------------------------------------------------
GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],  # identical to the box: IoU 1, positive
        [0.0, 0.0, 10.0, 4.5],  # IoU 0.45: between the thresholds, ignored
        [20.0, 20.0, 30.0, 30.0],  # IoU 0: background
        [0.0, 0.0, 10.0, 3.0],  # IoU 0.3: background
    ]
)


def test_match_positive_ignored_and_background():
    iou = box_iou(GT, ANCHORS)[0]
    assert 0.4 < iou[1] < 0.5
    assert match_anchors(ANCHORS, GT).tolist() == [
        0,
        MATCH_IGNORE,
        MATCH_BACKGROUND,
        MATCH_BACKGROUND,
    ]
    assert torch.equal(encode_boxes(GT, ANCHORS[:1]), torch.zeros(1, 4))  # zero deltas


def test_low_quality_matches_give_every_box_a_positive():
    tall = torch.tensor([[0.0, 0.0, 10.0, 25.0]])  # best IoU 0.4 (with anchor 0)
    assert match_anchors(ANCHORS, tall, allow_low_quality_matches=False).tolist()[0] == MATCH_IGNORE
    assert match_anchors(ANCHORS, tall).tolist()[0] == 0
    # On a real anchor grid: thin and tiny boxes whose best IoU is far below 0.5.
    head = RetinaNetHead(in_channels=[8, 8], strides=[8, 16], num_classes=1, num_convs=0)
    anchors, _ = head.anchors([(8, 8), (4, 4)])
    boxes = torch.tensor(
        [[3.0, 5.0, 6.0, 50.0], [30.0, 30.0, 34.0, 33.0], [10.0, 40.0, 60.0, 44.0]]
    )
    assert (box_iou(boxes, anchors).amax(1) < 0.5).all()
    matches = match_anchors(anchors, boxes)
    assert set(matches[matches >= 0].tolist()) == {0, 1, 2}
    strict = match_anchors(anchors, boxes, allow_low_quality_matches=False)
    assert (strict < 0).all()


def test_image_without_boxes_is_all_background():
    head = RetinaNetHead(in_channels=[8], strides=[8], num_classes=2, num_convs=0)
    out = head([torch.zeros(1, 8, 4, 4)])
    matches = match_anchors(out["anchors"], torch.zeros(0, 4))
    assert (matches == MATCH_BACKGROUND).all() and len(matches) == 4 * 4 * 9
    targets = {"boxes": [torch.zeros(0, 4)], "labels": [torch.zeros(0, dtype=torch.long)]}
    losses = head.loss(out, targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out["cls_logits"], torch.zeros(1, 144, 2), reduction="none"
    )  # focal: * 0.75 * p ** 2, summed, normalised by max(0 positives, 1)
    p = out["cls_logits"].sigmoid()
    torch.testing.assert_close(losses["cls"], (expected * 0.75 * p**2).sum())
    assert losses["box"].item() == 0.0


def _outputs(head: RetinaNetHead, anchors: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = len(anchors)
    return {
        "cls_logits": torch.randn(1, n, head.num_classes, generator=g).requires_grad_(),
        "bbox_regression": torch.randn(1, n, 4, generator=g).requires_grad_(),
        "anchors": anchors,
        "anchor_strides": torch.full((n,), 8.0),
    }


@pytest.mark.parametrize("box_loss", ["smooth_l1", "giou"])
def test_ignored_anchor_contributes_to_neither_loss(box_loss):
    head = RetinaNetHead(
        in_channels=[8], strides=[8], num_classes=2, num_convs=0, box_loss=box_loss
    )
    out = _outputs(head, ANCHORS)
    targets = {"boxes": [GT], "labels": [torch.tensor([1])]}
    losses = head.loss(out, targets)
    sum(losses.values()).backward()
    cls_grad, box_grad = out["cls_logits"].grad[0], out["bbox_regression"].grad[0]
    assert (cls_grad[1] == 0).all() and (box_grad[1] == 0).all()  # the ignored anchor
    assert (cls_grad[[0, 2, 3]] != 0).all()  # positive and background anchors: classified
    assert (box_grad[0] != 0).all() and (box_grad[2:] == 0).all()  # only the positive: boxes
    changed = {k: v.detach().clone() for k, v in out.items()}
    changed["cls_logits"][0, 1] = 10.0
    changed["bbox_regression"][0, 1] = 3.0
    for key, value in head.loss(changed, targets).items():
        torch.testing.assert_close(value, losses[key], msg=key)


@pytest.mark.parametrize("box_loss", ["smooth_l1", "giou"])
def test_loss_vanishes_at_perfect_predictions(box_loss):
    head = RetinaNetHead(
        in_channels=[8], strides=[8], num_classes=2, num_convs=0, box_loss=box_loss
    )
    out = head([torch.zeros(1, 8, 8, 8)])
    boxes, labels = torch.tensor([[6.0, 10.0, 40.0, 30.0], [20, 30, 60, 62]]), torch.tensor([1, 0])
    matches = match_anchors(out["anchors"], boxes)
    positive = matches >= 0
    assert positive.sum() > 2
    cls = torch.full((1, len(matches), 2), -30.0)
    cls[0, positive, labels[matches[positive]]] = 30.0
    deltas = torch.zeros(1, len(matches), 4)
    deltas[0, positive] = encode_boxes(boxes[matches[positive]], out["anchors"][positive])
    perfect = {**out, "cls_logits": cls, "bbox_regression": deltas}
    losses = head.loss(perfect, {"boxes": [boxes], "labels": [labels]})
    assert losses["cls"] < 1e-6 and losses["box"] < 1e-5, losses
    assert head.loss(out, {"boxes": [boxes], "labels": [labels]})["box"] > 0.05


# ---- end to end ------------------------------------------------------------------------------
@pytest.mark.parametrize("box_loss", ["smooth_l1", "giou"])
def test_overfit_two_boxes_with_simple_cnn_and_fpn(box_loss):
    torch.manual_seed(0)
    backbone = create_backbone("simple_cnn", out_indices=(2, 3, 4), batch_norm=False)
    neck = FPN(backbone.out_channels, backbone.strides, out_channels=32)
    head = RetinaNetHead(
        neck.out_channels,
        neck.strides,
        num_classes=2,
        num_convs=2,
        norm="group",  # without it (the paper's towers) this needs ~300 steps at lr 5e-3
        anchor_sizes_per_stride=3.0,  # 24, 48, 96 pixels: the boxes are 24-32 pixels wide
        box_loss=box_loss,
    )
    model = torch.nn.ModuleList([backbone, neck, head])
    gt_boxes = torch.tensor([[6.0, 8.0, 30.0, 36.0], [34.0, 26.0, 60.0, 58.0]])
    gt_labels = torch.tensor([0, 1])
    image = torch.zeros(1, 3, 64, 64)
    image[0, 0, 8:36, 6:30] = 1.0
    image[0, 2, 26:58, 34:60] = 1.0
    targets = {"boxes": [gt_boxes], "labels": [gt_labels], "has_boxes": torch.tensor([True])}
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(80):
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
