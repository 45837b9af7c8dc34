"""Evaluation geometry: boxes and masks predicted on the transformed image are mapped back to
the original one by the size ratio alone (the heads' ``postprocess(..., orig_sizes)``), so
the evaluation pipeline of a spatial head may only resize and pad at the bottom/right.

(a) ground truth sent through every allowed evaluation pipeline form and back through the
heads' own mapping lands on the original; (b) a crop, a centred pad or a random step in
``data.transforms.val`` of a detection config is refused with its key path before anything
is built or trained; (c) a classifier keeps its ``CenterCrop``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import detection_config, make_coco, run
from visionkit.build import create_model, model_from_meta
from visionkit.config import load_config
from visionkit.data.batch import collate
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.heads._utils import select_detections
from visionkit.models.heads.fcos_mask import FCOSMaskHead
from visionkit.models.heads.semantic_fpn import SemanticFPNHead

MEAN = STD = (0.5, 0.5, 0.5)

#: Every form of evaluation pipeline the spatial heads accept, by name.
ALLOWED_FORMS = {
    "resize_to_square": [{"name": "Resize", "height": 64, "width": 64}],
    "letterbox_top_left": [
        {"name": "LongestMaxSize", "max_size": 128},
        {"name": "PadIfNeeded", "min_height": 128, "min_width": 128, "position": "top_left"},
    ],
    "shortest_side_pad_to_32": [
        {"name": "SmallestMaxSize", "max_size": 72},
        {"name": "RandomBrightnessContrast", "p": 0.5},  # pixel-only: allowed at random
        {
            "name": "PadIfNeeded",
            "min_height": None,
            "min_width": None,
            "pad_height_divisor": 32,
            "pad_width_divisor": 32,
            "position": "top_left",
        },
    ],
    "resize_then_pad_bottom_right": [
        {"name": "Resize", "height": 64, "width": 96},
        {"name": "Pad", "padding": [0, 0, 8, 16]},
    ],
}

#: Original (H, W) of the test image: portrait and landscape, never square.
ORIG_SIZES = [(150, 100), (90, 160)]


def truth(orig_size: tuple[int, int]) -> dict:
    """A Sample with three non-overlapping boxes, their instance masks (ellipses inside the
    boxes) and the semantic map those masks paint (class = instance label)."""
    h, w = orig_size
    boxes = np.array(
        [
            [0.05 * w, 0.06 * h, 0.45 * w, 0.40 * h],
            [0.55 * w, 0.10 * h, 0.95 * w, 0.55 * h],
            [0.20 * w, 0.60 * h, 0.80 * w, 0.97 * h],
        ],
        dtype=np.float32,
    )
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    masks = []
    for x1, y1, x2, y2 in boxes:
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        masks.append(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1)
    masks = np.stack(masks).astype(np.uint8)
    labels = np.array([0, 1, 2], dtype=np.int64)
    semantic = np.zeros((h, w), dtype=np.uint8)
    for label, mask in zip(labels, masks, strict=True):
        semantic[mask > 0] = label + 1
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return {
        "image": image,
        "image_id": 1,
        "orig_size": (h, w),
        "boxes": boxes,
        "labels": labels,
        "masks": masks,
        "semantic": semantic,
    }


def round_trip(steps: list[dict], orig_size: tuple[int, int]) -> tuple[dict, dict]:
    """The Sample's ground truth through ``steps`` (as the evaluation pipeline runs them) and
    back to the original image through the mapping the heads' ``postprocess`` uses: the
    detection heads' ``select_detections``, ``fcos_mask``'s ``decode_masks`` and the semantic
    heads' ``postprocess`` (heads built with stride-1 outputs, so the transformed ground
    truth is their exact output). Returns ``(sample, recovered)``."""
    sample = truth(orig_size)
    batch = collate([apply_pipeline(build_pipeline(steps, MEAN, STD), sample)])
    image_size = tuple(batch["image_sizes"][0].tolist())
    orig = tuple(batch["orig_sizes"][0].tolist())
    boxes, labels = batch["boxes"][0], batch["labels"][0]
    assert len(boxes) == 3, "a box was lost in the pipeline"
    scores = torch.tensor([0.9, 0.8, 0.7])
    detections, _ = select_detections(boxes, scores, labels, image_size, 0.6, 100, orig)

    instance_head = FCOSMaskHead(in_channels=[8, 8], strides=[2, 4], num_classes=3, num_convs=1)
    assert instance_head.mask_stride == 1
    prototypes = (batch["masks"][0].float() * 2 - 1) * 20  # [3, Hb, Wb] logits
    masks = instance_head.decode_masks(
        torch.eye(3), prototypes, detections["boxes"], image_size, orig
    )

    semantic_head = SemanticFPNHead(in_channels=[8], strides=[1], num_classes=4, channels=8)
    assert semantic_head.output_stride == 1
    label_map = batch["semantic"].clamp(max=3)  # padding (IGNORE_PIXEL) → any class
    logits = F.one_hot(label_map, 4).permute(0, 3, 1, 2).float()
    semantic = semantic_head.postprocess(
        {"logits": logits}, batch["image_sizes"], batch["orig_sizes"]
    )[0]["mask"]
    scale = max(
        o / i for o, i in zip(orig, image_size, strict=True)
    )  # original pixels per input pixel
    return sample, {
        "boxes": detections["boxes"],
        "masks": masks,
        "semantic": semantic,
        "scale": scale,
    }


def near(recovered: torch.Tensor, original: np.ndarray, radius: int) -> bool:
    """``recovered`` differs from ``original`` only within ``radius`` pixels of the original's
    boundaries (what resampling to and from a smaller image may move), per class."""
    original = torch.as_tensor(original).long()
    for value in original.unique():
        inside = (original == value).float()[None, None]
        grown = F.max_pool2d(inside, 2 * radius + 1, 1, radius)[0, 0] > 0
        shrunk = F.max_pool2d(1 - inside, 2 * radius + 1, 1, radius)[0, 0] == 0
        got = recovered == value
        if (got & ~grown).any() or (shrunk & ~got).any():
            return False
    return True


@pytest.mark.parametrize("orig_size", ORIG_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("form", sorted(ALLOWED_FORMS))
def test_ground_truth_sent_through_an_allowed_val_pipeline_maps_back_to_the_original(
    form, orig_size
):
    steps = ALLOWED_FORMS[form]
    load_config(detection_spec(steps))  # the form is one a spatial head's config accepts
    sample, back = round_trip(steps, orig_size)
    torch.testing.assert_close(back["boxes"], torch.as_tensor(sample["boxes"]), atol=1e-3, rtol=0)
    # Masks are resampled twice (nearest down, bilinear up), so they are exact up to what the
    # coarser grid cannot place: boundaries within one input pixel (``scale`` original
    # pixels), centres within half of one (OpenCV's nearest-neighbour resize, which
    # albumentations uses for masks, samples each cell at its top-left corner).
    scale = back["scale"]
    radius = int(np.ceil(scale))
    for mask, original in zip(back["masks"], sample["masks"], strict=True):
        assert near(mask.long(), original, radius)
        centre = lambda m: torch.nonzero(torch.as_tensor(m)).float().mean(0)  # noqa: E731
        torch.testing.assert_close(centre(mask), centre(original), atol=scale / 2 + 0.1, rtol=0)
    assert near(back["semantic"], sample["semantic"], radius)
    assert tuple(back["semantic"].shape) == orig_size


@pytest.mark.parametrize(
    "steps",
    [
        [
            {"name": "Resize", "height": 64, "width": 64},
            {"name": "CenterCrop", "height": 48, "width": 48},
        ],
        [
            {"name": "LongestMaxSize", "max_size": 128},
            {"name": "PadIfNeeded", "min_height": 128, "min_width": 128},
        ],
    ],
    ids=["center_crop", "centred_pad"],
)
def test_the_same_round_trip_through_a_refused_pipeline_lands_elsewhere(steps):
    """The control of the test above: what the refusal saves users from is measurable."""
    sample, back = round_trip(steps, (150, 100))
    error = (back["boxes"] - torch.as_tensor(sample["boxes"])).abs().max()
    assert error > 5, f"boxes off by only {error:.3f} px"


def detection_spec(val_steps: list[dict], train_steps: list[dict] | None = None) -> dict:
    """A detection config (simple_cnn → FPN → fcos) with these evaluation steps."""
    return {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"det": {"name": "fcos", "num_classes": 2, "num_convs": 1}},
        },
        "data": {"image_size": 64, "transforms": {"val": val_steps, "train": train_steps}},
    }


REFUSED = {
    "center_crop": (
        [{"name": "Resize"}, {"name": "ToGray"}, {"name": "CenterCrop", "height": 48, "width": 48}],
        "data.transforms.val[2] (CenterCrop): not a resize or a bottom/right padding",
    ),
    "centred_pad": (
        [
            {"name": "LongestMaxSize", "max_size": 64},
            {"name": "PadIfNeeded", "min_height": 64, "min_width": 64},
        ],
        "data.transforms.val[1] (PadIfNeeded): position 'center' pads at the top/left too",
    ),
    "random_flip": (
        [{"name": "Resize"}, {"name": "HorizontalFlip", "p": 0.5}],
        "data.transforms.val[1] (HorizontalFlip): not a resize or a bottom/right padding",
    ),
    "resize_at_random": (
        [{"name": "Resize", "p": 0.5}],
        "data.transforms.val[0] (Resize): p: 0.5 applies it at random",
    ),
    "multi_scale": (
        [{"name": "LongestMaxSize", "max_size": [48, 64]}],
        "data.transforms.val[0] (LongestMaxSize): max_size [48, 64] picks a size at random",
    ),
    "top_left_pad": (
        [{"name": "Resize"}, {"name": "Pad", "padding": [4, 0, 0, 0]}],
        "data.transforms.val[1] (Pad): padding (4, 0, 0, 0) pads at the left/top",
    ),
}


@pytest.mark.reliability
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_geometric_or_random_val_step_of_a_detection_config_is_refused_naming_it(case):
    steps, expected = REFUSED[case]
    with pytest.raises(ConfigError) as err:
        load_config(detection_spec(steps))
    message = str(err.value)
    assert expected in message
    assert "spatial heads (det: fcos)" in message
    assert "allowed: Resize, LongestMaxSize" in message
    assert len(err.value.problems) == 1


@pytest.mark.reliability
def test_train_refuses_a_centre_crop_val_pipeline_before_reading_data_or_training(tmp_path, capsys):
    data = make_coco(tmp_path / "data")
    crop = {"name": "CenterCrop", "height": 24, "width": 24}
    config = detection_config(
        tmp_path / "det.yaml", data, data, data={"transforms": {"val": [{"name": "Resize"}, crop]}}
    )
    code, out, err = run(["train", "--config", config], capsys)
    assert code == 2
    assert "data.transforms.val[1] (CenterCrop): not a resize or a bottom/right padding" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.reliability
def test_a_checkpoint_whose_config_crops_its_val_images_is_refused_when_rebuilt():
    """``eval`` / ``predict`` / ``export`` rebuild the model from the checkpoint's config."""
    meta = create_model(detection_spec([{"name": "Resize"}])).meta
    meta["config"]["data"]["transforms"]["val"] = [
        {"name": "CenterCrop", "height": 48, "width": 48}
    ]
    with pytest.raises(CheckpointError, match=r"data\.transforms\.val\[0\] \(CenterCrop\)"):
        model_from_meta(meta)


def test_a_training_pipeline_of_a_detection_config_is_free():
    crop = [{"name": "RandomCrop", "height": 48, "width": 48}, {"name": "HorizontalFlip", "p": 0.5}]
    cfg = load_config(detection_spec([{"name": "Resize"}], train_steps=crop))
    assert cfg.data.transforms.train[0]["name"] == "RandomCrop"


def test_a_classifier_keeps_its_centre_crop():
    steps = [
        {"name": "SmallestMaxSize", "max_size": 72},
        {"name": "CenterCrop", "height": 64, "width": 64},
    ]
    model = create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn"},
                "heads": {"cls": {"name": "linear", "num_classes": 3}},
            },
            "data": {"transforms": {"val": steps}},
        }
    )
    out = model.preprocess(np.zeros((90, 160, 3), np.uint8))
    assert tuple(out["image"].shape) == (3, 64, 64)


def test_a_classifier_beside_a_semantic_head_gets_the_spatial_rule():
    with pytest.raises(ConfigError, match=r"spatial heads \(seg: semantic_fpn\)"):
        load_config(
            {
                "model": {
                    "backbone": {"name": "simple_cnn"},
                    "neck": {"name": "fpn"},
                    "heads": {
                        "cls": {"name": "linear", "num_classes": 3},
                        "seg": {"name": "semantic_fpn", "num_classes": 3},
                    },
                },
                "data": {
                    "transforms": {"val": [{"name": "CenterCrop", "height": 64, "width": 64}]}
                },
            }
        )


def test_image_size_is_the_content_inside_the_bottom_right_padding():
    steps = ALLOWED_FORMS["letterbox_top_left"]
    out = apply_pipeline(build_pipeline(steps, MEAN, STD), truth((300, 200)))
    assert tuple(out["image"].shape) == (3, 128, 128)
    assert out["image_size"] == (128, 85)
    assert out["semantic"].shape == (128, 128) and out["masks"].shape == (3, 128, 128)
    assert (out["semantic"][:, 85:] == 255).all()  # the padding carries no label (ignored)
    assert (out["masks"][:, :, 85:] == 0).all()  # and belongs to no instance
