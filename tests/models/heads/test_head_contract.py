"""The head contract (visionkit.models.heads.base.Head), checked on every registered head.

Each head is built from the registry as the factory builds it, on random features of the
channels and strides of what it reads (a neck's equal widths, or a backbone's growing ones):
forward shapes, finite losses with normal and with empty targets, gradients to every
parameter, ``postprocess``'s documented keys and shapes, and forward + loss under bfloat16
autocast.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from visionkit.config import builder_schema
from visionkit.data.batch import IGNORE_CLASS, IGNORE_PIXEL
from visionkit.models.heads import list_heads
from visionkit.registry import HEADS

BATCH, SIZE, NUM_CLASSES = 2, (64, 64), 3  # SIZE: (H, W) of the batch tensor
ORIG_SIZES = [(64, 64), (96, 80)]  # the original images, for postprocess
READS = {  # what each kind of source provides: (channels, strides)
    "neck": ([16, 16, 16], [8, 16, 32]),
    "backbone": ([8, 16, 24, 32], [4, 8, 16, 32]),
}
SMALL = {  # small widths where a head has them; score_thresh 0 so that detections exist
    "num_convs": 1,
    "channels": 8,
    "proto_channels": 8,
    "num_prototypes": 4,
    "hidden_dims": [8],
    "score_thresh": 0.0,
    "detections_per_img": 10,
    "num_identities": 4,
    "embedding_dim": 8,
}
BOX = torch.tensor([[8.0, 12.0, 40.0, 44.0]])


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    fields = builder_schema(HEADS, name).model_fields
    kwargs = {k: v for k, v in SMALL.items() if k in fields}
    in_channels, strides = READS[HEADS.component_class(name).reads]
    if "strides" in HEADS.signature(name).parameters:  # injected where taken, as the factory does
        kwargs["strides"] = strides
    head = HEADS.build(
        name,
        in_channels=in_channels,
        num_classes=NUM_CLASSES,
        class_names=[f"c{i}" for i in range(NUM_CLASSES)],
        **kwargs,
    )
    assert isinstance(head, HEADS.component_class(name))
    return head


def features(head: nn.Module, seed: int = 0) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    channels, strides = READS[head.reads]
    h, w = SIZE
    return [
        torch.randn(BATCH, c, h // s, w // s, generator=g)
        for c, s in zip(channels, strides, strict=True)
    ]


def targets(task: str, empty: bool = False) -> dict[str, Any]:
    """A collated batch of the head's labels: normal, or labelled with nothing in it."""
    h, w = SIZE
    if task in ("classification", "embedding"):  # image-level classes / identities
        labels = [IGNORE_CLASS] * BATCH if empty else [1, 2]
        return {("class" if task == "classification" else "identity"): torch.tensor(labels)}
    if task == "semantic":
        semantic = torch.full((BATCH, h, w), IGNORE_PIXEL if empty else 0, dtype=torch.long)
        if not empty:
            semantic[:, 12:44, 8:40] = 2
        return {"semantic": semantic, "has_semantic": torch.ones(BATCH, dtype=torch.bool)}
    boxes = [torch.zeros(0, 4) if empty else BOX.clone() for _ in range(BATCH)]
    batch = {
        "boxes": boxes,
        "labels": [torch.full((len(b),), 1, dtype=torch.long) for b in boxes],
        "has_boxes": torch.ones(BATCH, dtype=torch.bool),
    }
    if task == "instance":
        masks = []
        for b in boxes:
            m = torch.zeros(len(b), h, w, dtype=torch.uint8)
            m[:, 12:44, 8:40] = 1
            masks.append(m)
        batch |= {"masks": masks, "has_masks": torch.ones(BATCH, dtype=torch.bool)}
    if task == "keypoints":  # 17 keypoints (the head's default) inside each box, visible
        grid = torch.linspace(0.2, 0.8, 17)
        points = torch.stack([8 + 32 * grid, 12 + 32 * grid.flip(0), torch.full((17,), 2.0)], 1)
        keypoints = [points.expand(len(b), 17, 3).clone() for b in boxes]
        batch |= {"keypoints": keypoints, "has_keypoints": torch.ones(BATCH, dtype=torch.bool)}
    if task == "detection_embedding":  # identities 1 and 3 of the head's 4
        batch["identities"] = [torch.full((len(b),), 1 + 2 * i) for i, b in enumerate(boxes)]
    return batch


def check_outputs(task: str, out: dict[str, Tensor]) -> None:
    for key, value in out.items():
        assert isinstance(value, Tensor), key
        assert torch.isfinite(value).all(), key
    if task == "classification":
        assert out["logits"].shape == (BATCH, NUM_CLASSES)
    elif task == "embedding":
        assert out["embedding"].shape[0] == BATCH and out["embedding"].dim() == 2
    elif task == "semantic":
        logits = out["logits"]
        assert logits.shape[:2] == (BATCH, NUM_CLASSES) and logits.dim() == 4
    else:
        n = out["cls_logits"].shape[1]
        assert out["cls_logits"].shape == (BATCH, n, NUM_CLASSES)
        assert out["bbox_regression"].shape == (BATCH, n, 4)
        if task == "instance":
            k = out["mask_coeffs"].shape[2]
            assert out["mask_coeffs"].shape == (BATCH, n, k)
            assert out["prototypes"].shape[:2] == (BATCH, k)


def check_losses(losses: dict[str, Tensor]) -> Tensor:
    assert losses, "no loss terms"
    for key, value in losses.items():
        assert value.dim() == 0 and value.dtype == torch.float32, key
        assert torch.isfinite(value) and value >= 0, (key, value)
    return sum(losses.values())


HEAD_NAMES = list_heads()


def test_every_registered_head_is_checked():
    assert len(HEAD_NAMES) == 10  # 7, embedding, fcos_keypoints and fcos_embedding (issue 20)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_forward_shapes_and_class_attributes(name):
    head = build(name)
    assert head.reads in ("backbone", "neck") and isinstance(head.task, str)
    assert head.num_classes == NUM_CLASSES
    check_outputs(head.task, head(features(head)))


@pytest.mark.parametrize("empty", [False, True], ids=["normal", "empty"])
@pytest.mark.parametrize("name", HEAD_NAMES)
def test_loss_is_finite_and_reaches_every_parameter(name, empty):
    head = build(name)
    total = check_losses(head.loss(head(features(head)), targets(head.task, empty)))
    total.backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient (DDP would fail): {missing}"
    if not empty:
        assert total > 0
        assert any(p.grad.abs().sum() > 0 for p in head.parameters())


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_postprocess_gives_one_prediction_per_image_with_the_documented_keys(name):
    head = build(name).eval()
    with torch.no_grad():
        predictions = head.postprocess(head(features(head)), [SIZE] * BATCH, ORIG_SIZES)
    assert len(predictions) == BATCH
    for prediction, (oh, ow) in zip(predictions, ORIG_SIZES, strict=True):
        if head.task == "classification":
            assert set(prediction) == {"label", "name", "score", "top5", "scores", "names"}
            assert prediction["scores"].shape == (NUM_CLASSES,)
            assert len(prediction["top5"]) == min(5, NUM_CLASSES)
            assert prediction["top5"][0]["label"] == prediction["label"]
            assert prediction["name"] == f"c{prediction['label']}"
        elif head.task == "embedding":
            assert set(prediction) == {"embedding"}
            assert torch.allclose(prediction["embedding"].norm(), torch.tensor(1.0))
        elif head.task == "semantic":
            assert set(prediction) == {"mask", "names"}
            assert prediction["mask"].shape == (oh, ow)
            assert prediction["mask"].dtype == torch.int64
        else:
            keys = {"boxes", "scores", "labels", "names"} | (
                {"masks"} if head.task == "instance" else set()
            )
            if head.task == "keypoints":
                keys |= {"keypoints", "keypoint_names", "skeleton"}
            if head.task == "detection_embedding":
                keys |= {"embeddings"}
            assert set(prediction) == keys
            k = len(prediction["scores"])
            assert 0 < k <= SMALL["detections_per_img"]
            assert prediction["boxes"].shape == (k, 4) and prediction["labels"].shape == (k,)
            assert (prediction["scores"][:-1] >= prediction["scores"][1:]).all()
            boxes = prediction["boxes"]
            assert (boxes[:, 2] <= ow + 1e-4).all() and (boxes[:, 3] <= oh + 1e-4).all()
            assert len(prediction["names"]) == k
            if head.task == "instance":
                assert prediction["masks"].shape == (k, oh, ow)
                assert prediction["masks"].dtype == torch.bool
            if head.task == "keypoints":
                assert prediction["keypoints"].shape == (k, head.num_keypoints, 3)
            if head.task == "detection_embedding":
                assert prediction["embeddings"].shape == (k, head.embedding_dim)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_forward_and_loss_under_bfloat16_autocast_are_finite(name):
    head = build(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(features(head))
        losses = head.loss(out, targets(head.task))
    for key, value in out.items():
        assert torch.isfinite(value.float()).all(), key
    check_losses(losses)
