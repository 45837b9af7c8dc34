"""Semantic segmentation heads (``semantic_fpn``, ``deeplabv3plus``): shapes and strides, the
loss on labelled, ignored and unlabelled pixels, decoding, arguments, and a tiny overfit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor, nn

from visionkit.config import builder_schema
from visionkit.errors import SampleError
from visionkit.models.backbones import create_backbone
from visionkit.models.heads import DeepLabV3PlusHead, SemanticFPNHead
from visionkit.models.heads._semantic import near_boundary, soft_dice_loss
from visionkit.models.necks import FPN
from visionkit.registry import HEADS

CLASSES = {"semantic_fpn": SemanticFPNHead, "deeplabv3plus": DeepLabV3PlusHead}
KINDS = list(CLASSES)
STRIDES = {"semantic_fpn": [8, 16, 32], "deeplabv3plus": [4, 8, 16, 32]}
NUM_CLASSES = 3
IMAGE_SIZE = (32, 48)  # (H, W) of the batch tensor


def channels_for(kind: str, strides: list[int]) -> list[int]:
    """An FPN's equal widths, or a backbone's growing ones."""
    return (
        [16] * len(strides)
        if kind == "semantic_fpn"
        else [8 * (i + 1) for i in range(len(strides))]
    )


def make_head(kind: str, strides: list[int] | None = None, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    strides = strides or STRIDES[kind]
    kwargs = {"num_classes": NUM_CLASSES, "channels": 16, **kwargs}
    return CLASSES[kind](in_channels=channels_for(kind, strides), strides=strides, **kwargs)


def make_features(
    kind: str,
    strides: list[int] | None = None,
    batch_size: int = 2,
    size: tuple[int, int] = IMAGE_SIZE,
    seed: int = 0,
) -> list[Tensor]:
    strides = strides or STRIDES[kind]
    g = torch.Generator().manual_seed(seed)
    h, w = size
    return [
        torch.randn(batch_size, c, math.ceil(h / s), math.ceil(w / s), generator=g)
        for c, s in zip(channels_for(kind, strides), strides, strict=True)
    ]


def make_targets(batch_size: int = 2, seed: int = 0) -> dict[str, Tensor]:
    """Random labels with an ignored band (rows 0-3) in every image."""
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, NUM_CLASSES, (batch_size, *IMAGE_SIZE), generator=g)
    semantic[:, :4] = 255
    return {"semantic": semantic, "has_semantic": torch.ones(batch_size, dtype=torch.bool)}


def assert_all_params_have_grads(head: nn.Module, nonzero: bool) -> None:
    missing = [n for n, p in head.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient (DDP would fail): {missing}"
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    if nonzero:
        zero = [n for n, p in head.named_parameters() if not p.grad.abs().sum() > 0]
        assert not zero, f"parameters the loss does not reach: {zero}"


# ---- outputs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "strides", "kwargs", "output_stride"),
    [
        ("semantic_fpn", [8, 16, 32], {}, 4),
        ("semantic_fpn", [4, 8, 16, 32], {}, 4),
        ("semantic_fpn", [8, 16, 32, 64, 128], {"max_stride": 32}, 4),
        ("semantic_fpn", [16, 32], {}, 4),
        ("deeplabv3plus", [4, 8, 16, 32], {}, 4),
        ("deeplabv3plus", [8, 16, 32], {}, 8),
        ("deeplabv3plus", [2, 4, 8, 16, 32], {}, 4),  # the default skips the stride-2 level
        ("deeplabv3plus", [4, 8, 16, 32], {"low_level_index": 1}, 8),
        ("deeplabv3plus", [4, 8, 16, 32], {"low_level_index": -3}, 8),
    ],
)
def test_output_shape_and_stride(kind, strides, kwargs, output_stride):
    head = make_head(kind, strides, **kwargs)
    size = (64, 96)
    out = head(make_features(kind, strides, size=size))
    assert set(out) == {"logits"}
    assert head.output_stride == output_stride
    assert out["logits"].shape == (2, NUM_CLASSES, 64 // output_stride, 96 // output_stride)
    assert torch.isfinite(out["logits"]).all()


@pytest.mark.parametrize("kind", KINDS)
def test_odd_input_size_is_covered_by_the_logits(kind):
    head = make_head(kind)
    size = (37, 50)  # feature maps of ceil(size / stride)
    out = head(make_features(kind, size=size))
    h, w = out["logits"].shape[-2:]
    assert h * head.output_stride >= 37 and w * head.output_stride >= 50
    finest = math.ceil(37 / min(STRIDES[kind])), math.ceil(50 / min(STRIDES[kind]))
    ratio = min(STRIDES[kind]) // head.output_stride
    assert (h, w) == (finest[0] * ratio, finest[1] * ratio)
    target = torch.zeros(2, *size, dtype=torch.long)
    assert torch.isfinite(head.loss(out, {"semantic": target})["ce"])
    assert head.postprocess(out, [size, (30, 20)])[1]["mask"].shape == (30, 20)


@pytest.mark.parametrize("kind", KINDS)
def test_same_outputs_in_train_and_eval_and_batch_size_one(kind):
    head = make_head(kind)
    feats = make_features(kind, batch_size=1)
    with torch.no_grad():
        train_out = head.train()(feats)["logits"]
        eval_out = head.eval()(feats)["logits"]
    torch.testing.assert_close(train_out, eval_out)


# ---- loss ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dice_weight", [0.0, 0.5])
def test_loss_terms_and_gradients_reach_every_parameter(kind, dice_weight):
    head = make_head(kind, dice_weight=dice_weight)
    losses = head.loss(head(make_features(kind)), make_targets())
    assert set(losses) == ({"ce", "dice"} if dice_weight else {"ce"})
    for key, value in losses.items():
        assert value.dim() == 0 and value.dtype == torch.float32, key
        assert torch.isfinite(value) and value > 0, (key, value)
    if dice_weight:
        assert losses["dice"] <= dice_weight
    sum(losses.values()).backward()
    assert_all_params_have_grads(head, nonzero=True)


@pytest.mark.parametrize("kind", KINDS)
def test_ce_equals_cross_entropy_over_labelled_pixels(kind):
    head = make_head(kind)
    out = head(make_features(kind))
    targets = make_targets()
    up = F.interpolate(
        out["logits"], scale_factor=head.output_stride, mode="bilinear", align_corners=False
    )
    expected = F.cross_entropy(up, targets["semantic"], ignore_index=255)
    torch.testing.assert_close(head.loss(out, targets)["ce"], expected)
    # Labelling the ignored band changes the loss: the band was left out, not just lucky.
    labelled = {**targets, "semantic": targets["semantic"].clone()}
    labelled["semantic"][:, :4] = 0
    assert not torch.isclose(head.loss(out, labelled)["ce"], expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dice_weight", [0.0, 0.5])
def test_ignored_pixel_values_and_unlabelled_images_do_not_change_the_loss(kind, dice_weight):
    head = make_head(kind, dice_weight=dice_weight)
    feats = make_features(kind)
    out = head(feats)
    targets = make_targets()
    targets["has_semantic"] = torch.tensor([True, False])
    reference = head.loss(out, targets)
    # Other labels in the unlabelled image: same loss.
    changed = {**targets, "semantic": targets["semantic"].clone()}
    changed["semantic"][1] = (changed["semantic"][1] + 1) % NUM_CLASSES
    # The first image alone: same loss.
    alone = head.loss(
        head([f[:1] for f in feats]),
        {"semantic": targets["semantic"][:1], "has_semantic": torch.tensor([True])},
    )
    for other in (head.loss(out, changed), alone):
        assert other.keys() == reference.keys()
        for key in reference:
            torch.testing.assert_close(other[key], reference[key], msg=key)
    # ... while labelling the second image does change it.
    both = head.loss(out, {**targets, "has_semantic": torch.tensor([True, True])})
    assert not torch.isclose(both["ce"], reference["ce"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["all_ignore", "has_semantic_false", "no_semantic_key"])
@pytest.mark.parametrize("dice_weight", [0.0, 0.5])
def test_no_labels_gives_zero_loss_connected_to_all_parameters(kind, case, dice_weight):
    head = make_head(kind, dice_weight=dice_weight)
    targets = make_targets()
    if case == "all_ignore":
        targets["semantic"].fill_(255)
    elif case == "has_semantic_false":
        targets["has_semantic"] = torch.tensor([False, False])
    else:
        targets = {"class": torch.tensor([0, 1])}
    losses = head.loss(head(make_features(kind)), targets)
    assert set(losses) == ({"ce", "dice"} if dice_weight else {"ce"})
    for key, value in losses.items():
        assert value.item() == 0.0 and value.dtype == torch.float32, (key, value)
    sum(losses.values()).backward()
    assert_all_params_have_grads(head, nonzero=False)


@pytest.mark.parametrize("kind", KINDS)
def test_class_weights_weight_the_cross_entropy(kind):
    weights = [1.0, 5.0, 0.5]
    plain, weighted = make_head(kind), make_head(kind, class_weights=weights)
    out = plain(make_features(kind))
    targets = make_targets()
    up = F.interpolate(
        out["logits"], scale_factor=plain.output_stride, mode="bilinear", align_corners=False
    )
    expected = F.cross_entropy(
        up, targets["semantic"], weight=torch.tensor(weights), ignore_index=255
    )
    torch.testing.assert_close(weighted.loss(out, targets)["ce"], expected)
    assert not torch.isclose(plain.loss(out, targets)["ce"], expected)


def test_soft_dice_on_hand_made_probabilities():
    target = torch.tensor([[[0, 1], [1, 1]]])  # [1, 2, 2]
    valid = torch.tensor([[[True, True], [True, False]]])
    exact = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert soft_dice_loss(exact, target, valid).item() == pytest.approx(0.0)
    # Uniform over 2 of 3 classes: class 0 has I = 0.5, |P| + |G| = 1.5 + 1 -> dice 0.4;
    # class 1 has I = 1.0, |P| + |G| = 1.5 + 2 -> dice 4/7; class 2 is absent (not averaged).
    half = torch.tensor([0.5, 0.5, 0.0])[None, :, None, None].expand(1, 3, 2, 2)
    expected = 1 - (0.4 + 4 / 7) / 2
    assert soft_dice_loss(half, target, valid).item() == pytest.approx(expected)


@pytest.mark.parametrize("kind", KINDS)
def test_dice_term_is_weighted(kind):
    one, two = make_head(kind, dice_weight=1.0), make_head(kind, dice_weight=2.0)
    out = one(make_features(kind))
    targets = make_targets()
    a, b = one.loss(out, targets), two.loss(out, targets)
    torch.testing.assert_close(b["dice"], 2 * a["dice"])
    torch.testing.assert_close(a["ce"], b["ce"])


@pytest.mark.parametrize("kind", KINDS)
def test_loss_is_fp32_under_autocast_and_rejects_bad_labels(kind):
    head = make_head(kind, dice_weight=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(make_features(kind))
        losses = head.loss(out, make_targets())
        preds = head.postprocess(out, [IMAGE_SIZE] * 2)
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    assert all(p["mask"].dtype == torch.int64 for p in preds)
    bad = make_targets()
    bad["semantic"][0, 10, 10] = NUM_CLASSES
    with pytest.raises(SampleError, match=r"values \[3\] that are neither classes 0\.\.2"):
        head.loss(out, bad)


# ---- postprocess -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_postprocess_crops_padding_and_resizes(kind):
    head = make_head(kind, class_names=["bg", "thing", "pad"])
    s = head.output_stride
    logits = torch.zeros(2, 3, 64 // s, 64 // s)  # a 64 x 64 batch tensor
    h, w = 40, 24  # image 0 sits top-left, the rest is padding
    logits[0, 1, : h // s, : w // s] = 10.0  # "thing" inside the image
    logits[0, 2] = 1.0
    logits[0, 2, : h // s, : w // s] = 0.0  # "pad" outside it
    logits[1, 1, :, : 32 // s] = 5.0  # image 1: "thing" on the left half, "bg" on the right
    logits[1, 0, :, 32 // s :] = 5.0
    out = {"logits": logits}
    uncropped = head.postprocess(out, [(64, 64), (64, 64)])[0]["mask"]
    assert (uncropped == 2).any()  # the padding would show if it were not cut off
    preds = head.postprocess(out, torch.tensor([[h, w], [64, 64]]), [(80, 48), (64, 128)])
    assert preds[0]["mask"].shape == (80, 48) and preds[0]["mask"].dtype == torch.int64
    assert (preds[0]["mask"] == 1).all()
    right = preds[1]["mask"]
    assert right.shape == (64, 128)
    assert (right[:, :64] == 1).all() and (right[:, 64:] == 0).all()
    assert all(p["names"] == ["bg", "thing", "pad"] for p in preds)
    plain = head.postprocess(out, [(h, w), (64, 64)])
    assert plain[0]["mask"].shape == (h, w) and (plain[0]["mask"] == 1).all()
    assert make_head(kind).postprocess(out, [(h, w), (64, 64)])[0]["names"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_postprocess_of_head_outputs(kind):
    head = make_head(kind).eval()
    preds = head.postprocess(head(make_features(kind)), [IMAGE_SIZE, (20, 30)], [(50, 60), (7, 9)])
    assert [tuple(p["mask"].shape) for p in preds] == [(50, 60), (7, 9)]
    for p in preds:
        assert p["mask"].dtype == torch.int64
        assert ((p["mask"] >= 0) & (p["mask"] < NUM_CLASSES)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_postprocess_equals_argmax_with_ties_going_to_the_lower_class(kind):
    head = make_head(kind)
    s = head.output_stride
    logits = torch.randn(
        1, NUM_CLASSES, 64 // s, 64 // s, generator=torch.Generator().manual_seed(0)
    )
    logits[0, :, 0, :] = 1.0  # a tied row: every class equal
    mask = head.postprocess({"logits": logits}, [(64, 64)])[0]["mask"]
    full = torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear")
    assert torch.equal(mask, full[0].argmax(dim=0))
    assert (mask[0] == 0).all()


def test_near_boundary_marks_pixels_within_the_width_of_a_label_change():

    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 2  # a 4x4 square
    ring = near_boundary(target, 1)[0]
    assert ring[0].sum() == 0 and ring[4, 4] == 0  # far outside, the square's centre
    assert ring[1, 3] == 1 and ring[2, 3] == 1  # just outside and just inside the edge
    assert near_boundary(target, 2)[0].sum() > ring.sum()


@pytest.mark.parametrize("kind", KINDS)
def test_boundary_weight_counts_outline_errors_more(kind):
    head = make_head(kind)
    s = head.output_stride
    target = torch.zeros(1, *IMAGE_SIZE, dtype=torch.long)
    target[0, 8:24, 16:32] = 1
    # logits right inside and outside the square, wrong (class 2) on its outline
    logits = torch.full((1, NUM_CLASSES, IMAGE_SIZE[0] // s, IMAGE_SIZE[1] // s), -5.0)
    logits[0, 0] = 5.0
    logits[0, 1, 8 // s : 24 // s, 16 // s : 32 // s] = 10.0
    out = {"logits": logits}
    plain = head.loss(out, {"semantic": target})["ce"]
    weighted = make_head(kind, boundary_weight=4.0, boundary_width=2).loss(
        out, {"semantic": target}
    )["ce"]
    assert weighted > plain  # the errors sit on the outline, which now weighs 5x
    with pytest.raises(ValueError, match="boundary_weight"):
        make_head(kind, boundary_weight=-1.0)
    with pytest.raises(ValueError, match="boundary_width"):
        make_head(kind, boundary_width=0)


# ---- arguments and registry ------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_argument_errors(kind):
    with pytest.raises(ValueError, match="num_classes"):
        make_head(kind, num_classes=None)
    with pytest.raises(ValueError, match="class_names"):
        make_head(kind, class_names=["a", "b"])
    with pytest.raises(ValueError, match="class_weights"):
        make_head(kind, class_weights=[1.0, 2.0])
    for bad in (float("nan"), float("inf")):  # session 38: accepted, then a NaN loss
        with pytest.raises(ValueError, match="class_weights must be finite"):
            make_head(kind, class_weights=[1.0, bad, 1.0])
    with pytest.raises(ValueError, match="ignore_index"):
        make_head(kind, ignore_index=1)
    with pytest.raises(ValueError, match="dice_weight"):
        make_head(kind, dice_weight=-1.0)
    with pytest.raises(ValueError, match="strides"):
        CLASSES[kind](in_channels=[8, 8], strides=[16, 8], num_classes=2)
    with pytest.raises(ValueError, match="strides"):
        CLASSES[kind](in_channels=[8, 8], strides=[8, 12], num_classes=2)
    with pytest.raises(ValueError, match="feature maps"):
        make_head(kind)(make_features(kind)[:-1])
    head = make_head(kind, num_classes=None, class_names=["a", "b"])
    assert head.num_classes == 2 and head.class_names == ["a", "b"]


def test_deeplab_low_level_index_and_fpn_max_stride_errors():
    for index in (4, 3, -5):  # out of range, the deepest level, out of range
        with pytest.raises(ValueError, match="low_level_index"):
            make_head("deeplabv3plus", low_level_index=index)
    with pytest.raises(ValueError, match="two backbone levels"):
        DeepLabV3PlusHead(in_channels=[8], strides=[32], num_classes=2)
    with pytest.raises(ValueError, match="max_stride"):
        make_head("semantic_fpn", max_stride=4)


@pytest.mark.parametrize(
    ("kind", "cls", "reads", "kwargs"),
    [
        ("semantic_fpn", SemanticFPNHead, "neck", {"max_stride": 32}),
        ("deeplabv3plus", DeepLabV3PlusHead, "backbone", {"aspp_rates": [1, 2, 3]}),
    ],
)
def test_registry_attributes_and_config_schema(kind, cls, reads, kwargs):
    assert HEADS.get(kind) is cls and HEADS.component_class(kind) is cls
    head = make_head(kind)
    assert isinstance(head, cls)
    assert (head.task, head.reads) == ("semantic", reads)
    schema = builder_schema(HEADS, kind)
    args = {
        "num_classes": 4,
        "channels": 32,
        "ignore_index": 255,
        "dice_weight": 0.5,
        "class_weights": [1, 2, 3, 4],
        **kwargs,
    }
    validated = schema.model_validate(args).model_dump(mode="json")
    built = HEADS.build(
        kind, in_channels=channels_for(kind, STRIDES[kind]), strides=STRIDES[kind], **validated
    )
    assert built.num_classes == 4 and built.class_weights.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValidationError, match="chanels"):
        schema.model_validate({"chanels": 32})


# ---- end to end ------------------------------------------------------------------------------
def two_region_batch() -> tuple[Tensor, Tensor]:
    """Two 64x64 images: a bright rectangle (class 1) on a dark background (class 0)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=g) * 0.2
    masks = torch.zeros(2, 64, 64, dtype=torch.long)
    for i, (y0, y1, x0, x1) in enumerate([(8, 40, 12, 52), (24, 60, 4, 36)]):
        images[i, :, y0:y1, x0:x1] += 0.8
        masks[i, y0:y1, x0:x1] = 1
    return images, masks


@pytest.mark.parametrize("kind", KINDS)
def test_overfit_two_regions_with_simple_cnn(kind):
    torch.manual_seed(0)
    widths = (8, 16, 16, 32, 32)
    if kind == "semantic_fpn":
        backbone = create_backbone(
            "simple_cnn", out_indices=(2, 3, 4), widths=widths, batch_norm=False
        )
        neck = FPN(backbone.out_channels, backbone.strides, out_channels=16)
        head = SemanticFPNHead(neck.out_channels, neck.strides, num_classes=2, channels=16)
    else:
        backbone = create_backbone(
            "simple_cnn", out_indices=(1, 2, 3, 4), widths=widths, batch_norm=False
        )
        neck = nn.Identity()
        head = DeepLabV3PlusHead(
            backbone.out_channels, backbone.strides, num_classes=2, channels=16
        )
    model = nn.Sequential(backbone, neck, head)
    images, masks = two_region_batch()
    targets = {"semantic": masks, "has_semantic": torch.tensor([True, True])}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(60):
        loss = sum(head.loss(model(images), targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0], history
    model.eval()
    with torch.no_grad():
        preds = head.postprocess(model(images), [(64, 64)] * 2)
    accuracy = torch.stack([p["mask"] for p in preds]).eq(masks).float().mean().item()
    assert accuracy > 0.9, (accuracy, history)
