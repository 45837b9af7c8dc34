"""The contract tests every dense detection head passes (FCOS, RetinaNet, ...).

Reuse it by subclassing in a ``test_*.py`` file::

    from detection_tester import DetectionHeadTester

    class TestFCOSContract(DetectionHeadTester):
        name = "fcos"  # the registered head
        head_kwargs = {"num_convs": 2}

The head is built like the factory builds it, ``HEADS.build(name, in_channels=[C] * L,
strides=[...], num_classes=..., **head_kwargs)``, and must accept ``score_thresh``,
``detections_per_img`` and ``class_names``. The head reads a neck (equal channels on every
level) and returns at least ``cls_logits`` ``[B, N, C]`` and ``bbox_regression``
``[B, N, 4]``; tensors with a batch dimension share ``N``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from visionkit.config import builder_schema
from visionkit.registry import HEADS

BOXES = [  # per image: xyxy in a 64 x 96 (H x W) input, labels
    (torch.tensor([[4.0, 6.0, 30.0, 40.0], [40.0, 10.0, 90.0, 60.0]]), torch.tensor([0, 2])),
    (torch.tensor([[20.0, 20.0, 44.0, 36.0]]), torch.tensor([1])),
]


class DetectionHeadTester:
    """Contract tests for a registered detection head; subclass with ``name`` set."""

    name: ClassVar[str]
    head_kwargs: ClassVar[dict[str, Any]] = {}
    num_classes: ClassVar[int] = 3
    channels: ClassVar[int] = 32
    strides: ClassVar[tuple[int, ...]] = (8, 16, 32)
    image_size: ClassVar[tuple[int, int]] = (64, 96)  # (H, W) of the batch tensor

    # ---- helpers -------------------------------------------------------------------------
    def make_head(self, seed: int = 0, **overrides: Any) -> nn.Module:
        torch.manual_seed(seed)
        kwargs = {"num_classes": self.num_classes, **self.head_kwargs, **overrides}
        return HEADS.build(
            self.name,
            in_channels=[self.channels] * len(self.strides),
            strides=list(self.strides),
            **kwargs,
        )

    def make_features(self, batch_size: int = 2, seed: int = 0) -> list[Tensor]:
        g = torch.Generator().manual_seed(seed)
        h, w = self.image_size
        return [
            torch.randn(batch_size, self.channels, math.ceil(h / s), math.ceil(w / s), generator=g)
            for s in self.strides
        ]

    def make_targets(self, has_boxes: tuple[bool, ...] = (True, True)) -> dict[str, Any]:
        return {
            "boxes": [BOXES[i % 2][0].clone() for i in range(len(has_boxes))],
            "labels": [BOXES[i % 2][1].clone() for i in range(len(has_boxes))],
            "has_boxes": torch.tensor(has_boxes),
        }

    @staticmethod
    def total(losses: dict[str, Tensor]) -> Tensor:
        return sum(losses.values())

    @staticmethod
    def assert_all_params_have_grads(head: nn.Module) -> None:
        missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters without a gradient (DDP would fail): {missing}"

    # ---- contract ------------------------------------------------------------------------
    def test_class_attributes_and_registry(self):
        head = self.make_head(class_names=["a", "b", "c"])
        assert head.task == "detection"
        assert head.reads == "neck"
        assert head.num_classes == self.num_classes
        assert list(head.class_names) == ["a", "b", "c"]
        assert HEADS.component_class(self.name) is type(head)
        schema = builder_schema(HEADS, self.name)  # the signature is a valid config schema
        assert {"num_classes", "score_thresh", "detections_per_img"} <= set(schema.model_fields)
        assert not {"in_channels", "strides", "class_names"} & set(schema.model_fields)

    def test_output_shapes(self):
        head = self.make_head()
        out = head(self.make_features(batch_size=2))
        n = out["cls_logits"].shape[1]
        assert out["cls_logits"].shape == (2, n, self.num_classes)
        assert out["bbox_regression"].shape == (2, n, 4)
        h, w = self.image_size
        assert n >= sum(math.ceil(h / s) * math.ceil(w / s) for s in self.strides)
        for key, value in out.items():
            assert torch.isfinite(value).all(), key
            if value.dim() >= 2 and value.shape[0] == 2 and key not in ("points", "anchors"):
                assert value.shape[1] == n, key

    def test_same_outputs_in_train_and_eval(self):
        head = self.make_head()
        feats = self.make_features()
        with torch.no_grad():
            train_out = head.train()(feats)
            eval_out = head.eval()(feats)
        assert train_out.keys() == eval_out.keys()
        for key in train_out:
            torch.testing.assert_close(train_out[key], eval_out[key], msg=key)

    def test_loss_normal_targets(self):
        head = self.make_head()
        losses = head.loss(head(self.make_features()), self.make_targets())
        assert losses, "no loss terms"
        for key, value in losses.items():
            assert value.dim() == 0 and value.dtype == torch.float32, key
            assert torch.isfinite(value) and value >= 0, (key, value)
        self.total(losses).backward()
        self.assert_all_params_have_grads(head)

    def test_labelled_image_without_boxes_is_a_negative(self):
        head = self.make_head()
        out = head(self.make_features())
        empty = self.make_targets()
        empty["boxes"][1] = torch.zeros(0, 4)
        empty["labels"][1] = torch.zeros(0, dtype=torch.long)
        negative = head.loss(out, empty)
        ignored = head.loss(out, self.make_targets(has_boxes=(True, False)))
        assert all(torch.isfinite(v) for v in negative.values())
        # The empty image's background points/anchors count as negatives; ignored, they don't.
        assert self.total(negative) > self.total(ignored)

    def test_unlabelled_image_does_not_change_the_loss(self):
        head = self.make_head()
        feats = self.make_features()
        both = head.loss(head(feats), self.make_targets(has_boxes=(True, False)))
        first = self.make_targets(has_boxes=(True,))
        alone = head.loss(head([f[:1] for f in feats]), first)
        for key in alone:
            torch.testing.assert_close(both[key], alone[key], msg=key)

    @pytest.mark.parametrize("case", ["has_boxes_false", "no_boxes_key"])
    def test_no_labels_gives_zero_loss_connected_to_all_parameters(self, case):
        head = self.make_head()
        targets = self.make_targets(has_boxes=(False, False))
        if case == "no_boxes_key":
            targets = {"class": torch.tensor([0, 1])}
        losses = head.loss(head(self.make_features()), targets)
        for key, value in losses.items():
            assert value.item() == 0.0, (key, value)
        self.total(losses).backward()
        self.assert_all_params_have_grads(head)
        assert all(torch.isfinite(p.grad).all() for p in head.parameters())

    def test_loss_is_fp32_under_autocast(self):
        head = self.make_head()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = head(self.make_features())
            losses = head.loss(out, self.make_targets())
            preds = head.postprocess(out, [self.image_size] * 2)
        for key, value in losses.items():
            assert value.dtype == torch.float32 and torch.isfinite(value), key
        assert all(p["boxes"].dtype == torch.float32 for p in preds)

    def test_loss_decreases_when_overfitting_one_batch(self):
        head = self.make_head()
        feats = self.make_features()
        targets = self.make_targets()
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
        history = []
        for _ in range(40):
            loss = self.total(head.loss(head(feats), targets))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(loss.item())
        assert all(math.isfinite(x) for x in history)
        assert history[-1] < 0.5 * history[0], history

    # ---- postprocess ---------------------------------------------------------------------
    def test_postprocess_boxes_inside_images_and_capped(self):
        head = self.make_head(
            score_thresh=0.0, detections_per_img=5, class_names=["a", "b", "c"]
        ).eval()
        sizes = [self.image_size, (40, 50)]  # the second image is padded in the batch
        preds = head.postprocess(head(self.make_features()), torch.tensor(sizes))
        assert len(preds) == 2
        for pred, (h, w) in zip(preds, sizes, strict=True):
            boxes, scores, labels = pred["boxes"], pred["scores"], pred["labels"]
            assert 0 < len(boxes) <= 5
            assert boxes.shape == (len(boxes), 4) and boxes.dtype == torch.float32
            assert scores.shape == labels.shape == (len(boxes),)
            assert labels.dtype == torch.int64
            assert ((labels >= 0) & (labels < self.num_classes)).all()
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            assert (scores[:-1] >= scores[1:]).all()
            assert pred["names"] == [["a", "b", "c"][i] for i in labels.tolist()]

    def test_postprocess_ignores_the_locations_on_an_images_padding(self):
        """What the head scores on the padding of a smaller image of the batch (its box
        clipped to a strip along the image's border) is not a detection of that image."""
        head = self.make_head(score_thresh=0.001, detections_per_img=50).eval()
        out = head(self.make_features())
        centres = out["points"] if "points" in out else out["anchors"].view(-1, 2, 2).mean(1)
        sizes = [self.image_size, (40, 50)]
        padding = (centres[:, 0] >= 50) | (centres[:, 1] >= 40)
        assert padding.any() and not padding.all()
        preds = []
        for logit in (20.0, -20.0):  # the padding of image 1 sure of every class, or of none
            cls_logits = out["cls_logits"].clone()
            cls_logits[1, padding] = logit
            preds.append(head.postprocess({**out, "cls_logits": cls_logits}, sizes)[1])
        assert len(preds[0]["boxes"]) > 0
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(preds[0][key], preds[1][key]), key

    def test_postprocess_without_class_names_and_above_threshold(self):
        head = self.make_head(score_thresh=1.0).eval()
        preds = head.postprocess(head(self.make_features()), [self.image_size] * 2)
        for pred in preds:
            assert pred["boxes"].shape == (0, 4)
            assert pred["scores"].shape == pred["labels"].shape == (0,)
            assert pred["names"] is None

    def test_postprocess_rescales_to_orig_sizes(self):
        head = self.make_head(score_thresh=0.0, detections_per_img=20).eval()
        out = head(self.make_features())
        sizes = [self.image_size, (40, 50)]
        plain = head.postprocess(out, sizes)
        orig = [(2 * self.image_size[0], self.image_size[1] // 2), (20, 150)]
        scaled = head.postprocess(out, sizes, orig_sizes=orig)
        for a, b, (h, w), (oh, ow) in zip(plain, scaled, sizes, orig, strict=True):
            ratio = torch.tensor([ow / w, oh / h, ow / w, oh / h])
            torch.testing.assert_close(b["boxes"], a["boxes"] * ratio)
            torch.testing.assert_close(b["scores"], a["scores"])
            assert torch.equal(b["labels"], a["labels"])
