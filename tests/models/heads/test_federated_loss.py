"""The detection heads' classification loss leaves out, per image, the classes its set does
not annotate (``annotated_classes`` of a batch mixing sets with other box classes): those
channels get no gradient, the others exactly the gradient of the full loss, and a batch
without the key gives the loss of before, to the bit."""

from __future__ import annotations

import math

import pytest
import torch

from visionkit.errors import DataError
from visionkit.models.heads._utils import focal_loss
from visionkit.registry import HEADS

HEADS_MASKED = [("fcos", {"num_convs": 1}), ("retinanet", {"num_convs": 1}), ("fcos_mask", {})]
STRIDES, CHANNELS, SIZE = (8, 16, 32), 16, (64, 96)  # SIZE: (H, W) of the batch tensor
TARGETS = {  # image 0: classes 0 and 2, image 1: class 1 (as two sets of a mix would give)
    "boxes": [
        torch.tensor([[4.0, 6.0, 30.0, 40.0], [40.0, 10.0, 90.0, 60.0]]),
        torch.tensor([[20.0, 20.0, 44.0, 36.0]]),
    ],
    "labels": [torch.tensor([0, 2]), torch.tensor([1])],
    "has_boxes": torch.tensor([True, True]),
}
#: set "a" annotates classes 0 and 2, set "b" class 1
ANNOTATED = torch.tensor([[True, False, True], [False, True, False]])


def losses_and_grad(name, kwargs, targets):
    """The head's losses on fixed features, and the gradient of their sum on ``cls_logits``."""
    torch.manual_seed(0)
    head = HEADS.build(
        name, in_channels=[CHANNELS] * 3, strides=list(STRIDES), num_classes=3, **kwargs
    )
    g = torch.Generator().manual_seed(0)
    features = [
        torch.randn(2, CHANNELS, math.ceil(SIZE[0] / s), math.ceil(SIZE[1] / s), generator=g)
        for s in STRIDES
    ]
    outputs = head(features)
    outputs["cls_logits"].retain_grad()
    losses = head.loss(outputs, targets)
    sum(losses.values()).backward()
    return losses, outputs["cls_logits"].grad


@pytest.mark.parametrize(("name", "kwargs"), HEADS_MASKED, ids=[h for h, _ in HEADS_MASKED])
def test_every_class_annotated_gives_the_loss_of_before_bit_for_bit(name, kwargs):
    before, grad_before = losses_and_grad(name, kwargs, TARGETS)
    every = {**TARGETS, "annotated_classes": torch.ones(2, 3, dtype=torch.bool)}
    after, grad_after = losses_and_grad(name, kwargs, every)
    assert before.keys() == after.keys()
    for term in before:
        assert torch.equal(before[term], after[term]), term
    assert torch.equal(grad_before, grad_after)


@pytest.mark.parametrize(("name", "kwargs"), HEADS_MASKED, ids=[h for h, _ in HEADS_MASKED])
def test_unannotated_classes_get_no_gradient_and_the_others_theirs_unchanged(name, kwargs):
    full, grad_full = losses_and_grad(name, kwargs, TARGETS)
    masked, grad = losses_and_grad(name, kwargs, {**TARGETS, "annotated_classes": ANNOTATED})
    for image, row in enumerate(ANNOTATED):
        assert (grad[image][:, ~row] == 0).all()  # car is no background in a photo of "a"
        assert torch.equal(grad[image][:, row], grad_full[image][:, row])
        assert (grad_full[image][:, ~row] != 0).any()  # ... where the full loss taught it
    assert masked["cls"] < full["cls"]
    for term in set(full) - {"cls"}:  # box, centerness, mask: the image's own boxes
        assert torch.equal(masked[term], full[term]), term


def test_a_box_of_a_class_its_image_does_not_annotate_still_counts_as_positive():
    # a mosaic of two sets annotates what both annotate (here nothing), yet its boxes are
    # labelled objects: their class's positives stay, its negatives go
    logits = torch.zeros(1, 4, 2, requires_grad=True)
    labels = torch.tensor([[0, -1, -1, 1]])  # locations 0 and 3 positive
    none = torch.zeros(1, 1, 2, dtype=torch.bool)
    focal_loss(logits, labels, torch.tensor([True]), torch.tensor(2.0), annotated=none).backward()
    counted = logits.grad != 0
    assert counted.tolist() == [[[True, False], [False, False], [False, False], [False, True]]]


def test_a_vector_of_the_wrong_size_is_a_data_error_naming_the_head_and_the_shape():
    # a library caller's batch of data with 5 box classes, for a head of 3: a visionkit error
    wrong = {**TARGETS, "annotated_classes": torch.ones(2, 5, dtype=torch.bool)}
    with pytest.raises(DataError, match=r"fcos: the batch's annotated_classes has shape \[2, 5\]"):
        losses_and_grad("fcos", {"num_convs": 1}, wrong)
    with pytest.raises(DataError, match=r"retinanet: .* the head 3 \(give the head num_classes: 5"):
        losses_and_grad("retinanet", {"num_convs": 1}, wrong)
