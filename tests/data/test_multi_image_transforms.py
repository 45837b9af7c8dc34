"""Multi-image steps of ``data.transforms.train`` (:mod:`visionkit.data.mixing`): ``Mosaic``
fed other raw samples by :class:`TransformedDataset`, ``MixUp`` and ``CopyPaste`` on
transformed samples; their placement rules; a tiny training run with all three."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

from tests.helpers import detection_config, make_coco, run
from visionkit.config import load_config
from visionkit.data.datasets import TransformedDataset
from visionkit.data.image_size import with_image_size
from visionkit.data.mixing import CopyPaste, MixUp
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.errors import ConfigError, SampleError

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # Normalize then only divides by 255


class Samples:
    """An in-memory dataset: image ``k`` is one flat colour (its own among 12) with one
    large box of label ``k`` (its instance mask, and a label map of ``k + 1`` on the box), of
    one of 6 sizes. Counts the reads."""

    def __init__(self, n: int = 6, masks: bool = True, semantic: bool = True) -> None:
        self.n, self.masks, self.semantic, self.reads = n, masks, semantic, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> dict:
        self.reads += 1
        h, w = 40 + 4 * (k % 6), 48 + 2 * (k % 6)
        image = np.full((h, w, 3), 10 + 20 * (k % 12), np.uint8)
        x1, y1, x2, y2 = 4, 4, w - 4, h - 4
        sample = {
            "image": image,
            "image_id": k + 1,
            "orig_size": (h, w),
            "path": f"mem/{k}.png",
            "boxes": np.array([[x1, y1, x2, y2]], np.float32),
            "labels": np.array([k], np.int64),
        }
        mask = np.zeros((h, w), np.uint8)
        mask[y1:y2, x1:x2] = 1
        if self.masks:
            sample["masks"] = mask[None]
        if self.semantic:
            sample["semantic"] = mask * (k + 1)
        return sample


def pipeline(steps, size=64):
    return build_pipeline([with_image_size(s, size) for s in steps], MEAN, STD, "t")


def draw(dataset: TransformedDataset, index: int, seed: int = 0) -> dict:
    """Sample ``index`` with the pipeline re-seeded from ``seed`` (as the trainer does)."""
    torch.manual_seed(seed)
    return dataset[index]


def assert_consistent(out: dict, size: tuple[int, int]) -> None:
    """Boxes inside the image, one mask per box, each mask inside its box."""
    h, w = size
    boxes, masks = out["boxes"], out["masks"]
    assert tuple(out["image"].shape) == (3, h, w)
    assert len(boxes) == len(out["labels"]) == len(masks)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    filled = masks.flatten(1).any(1).bool()
    tight = masks_to_boxes(masks[filled].bool()) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    inside = (tight[:, :2] >= boxes[filled, :2] - 1) & (tight[:, 2:] <= boxes[filled, 2:] + 1)
    assert inside.all()


def test_mosaic_assembles_other_samples_at_the_target_size():
    samples = Samples()
    dataset = TransformedDataset(samples, pipeline([{"name": "Mosaic", "p": 1.0}]), reseed=True)
    for index in range(4):
        out = draw(dataset, index, seed=index)
        assert_consistent(out, (64, 64))
        labels = set(out["labels"].tolist())
        assert len(labels) >= 2  # boxes from at least two source images
        # each image's label map (k + 1 on its box) lies exactly on the masks of label k
        semantic = out["semantic"]
        for label, mask in zip(out["labels"].tolist(), out["masks"], strict=True):
            assert (semantic[mask.bool()] == label + 1).all()
        assert set(semantic.unique().tolist()) <= {0} | {k + 1 for k in labels}
        assert out["image_id"] == index + 1
    # 1 + grid_yx[0] * grid_yx[1] - 1 raw samples per mosaic
    assert samples.reads == 4 * 4


def test_mosaic_is_reproducible_from_the_seed_and_reads_only_when_drawn():
    dataset = TransformedDataset(Samples(), pipeline([{"name": "Mosaic", "p": 1.0}]), reseed=True)
    first, again, other = draw(dataset, 2, seed=5), draw(dataset, 2, seed=5), draw(dataset, 2, 6)
    for key in ("image", "boxes", "labels", "masks", "semantic"):
        assert torch.equal(first[key], again[key]), key
    assert not torch.equal(first["image"], other["image"])

    never = Samples()
    dataset = TransformedDataset(
        never, pipeline([{"name": "Mosaic", "p": 0.0}, {"name": "Resize"}])
    )
    out = dataset[1]
    assert never.reads == 1 and out["labels"].tolist() == [1]


def test_mosaic_without_instance_masks_or_label_maps():
    boxes_only = TransformedDataset(
        Samples(masks=False, semantic=False), pipeline([{"name": "Mosaic", "p": 1}]), reseed=True
    )
    out = draw(boxes_only, 0)
    assert "masks" not in out and "semantic" not in out and len(out["boxes"]) >= 2
    semantic_only = TransformedDataset(
        Samples(masks=False), pipeline([{"name": "Mosaic", "p": 1}]), reseed=True
    )
    out = draw(semantic_only, 0)
    assert tuple(out["semantic"].shape) == (64, 64) and len(out["semantic"].unique()) >= 3


def transformed(k: int, size: int = 32, samples: type[Samples] = Samples) -> dict:
    """Sample ``k`` of ``samples`` resized to ``size`` × ``size`` (a transformed Sample)."""
    resize = build_pipeline([{"name": "Resize", "height": size, "width": size}], MEAN, STD)
    return apply_pipeline(resize, samples()[k])


def test_mixup_blends_the_pixels_and_keeps_the_boxes_of_both():
    a, b = transformed(0), transformed(3)
    out = MixUp(p=1.0)(a, b, np.random.default_rng(0))
    r = float(
        (out["image"][0, 0, 0] - b["image"][0, 0, 0]) / (a["image"][0, 0, 0] - b["image"][0, 0, 0])
    )
    assert 0.3 < r < 0.7  # Beta(32, 32)
    assert torch.allclose(out["image"], r * a["image"] + (1 - r) * b["image"], atol=1e-5)
    assert out["labels"].tolist() == [0, 3]
    assert torch.equal(out["boxes"], torch.cat([a["boxes"], b["boxes"]]))
    assert torch.equal(out["masks"], torch.cat([a["masks"], b["masks"]]))
    dominant = a if r >= 0.5 else b
    assert torch.equal(out["semantic"], dominant["semantic"])


def test_mixup_in_the_dataset_mixes_two_transformed_samples_and_resizes_the_other():
    # a pipeline without a fixed output size: the other sample is resized to this one's size
    steps = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "MixUp", "p": 1.0}]
    dataset = TransformedDataset(Samples(n=40), pipeline(steps), reseed=True)
    plain = TransformedDataset(Samples(n=40), pipeline(steps[:1]), reseed=True)
    out, alone = draw(dataset, 0), draw(plain, 0)
    assert tuple(out["image"].shape) == tuple(alone["image"].shape) == (3, 40, 48)
    assert len(out["boxes"]) == 2 and out["labels"][0] == 0
    assert_consistent(out, (40, 48))
    assert not torch.allclose(out["image"], alone["image"])
    assert torch.equal(draw(dataset, 0)["image"], out["image"])


def test_copy_paste_pastes_instances_with_masks_and_drops_a_covered_one():
    a = transformed(0, 48)
    a["boxes"] = torch.tensor([[4.0, 4.0, 12.0, 12.0], [20.0, 4.0, 40.0, 20.0]])
    a["labels"] = torch.tensor([0, 1])
    a["masks"] = torch.zeros((2, 48, 48), dtype=torch.uint8)
    a["masks"][0, 4:12, 4:12] = 1
    a["masks"][1, 4:20, 20:40] = 1
    a["semantic"] = (a["masks"][0] + 2 * a["masks"][1]).long()
    b = transformed(4, 48)
    b["boxes"], b["labels"] = torch.tensor([[0.0, 0.0, 28.0, 24.0]]), torch.tensor([4])
    b["masks"] = torch.zeros((1, 48, 48), dtype=torch.uint8)
    b["masks"][0, :24, :28] = 1
    b["semantic"] = b["masks"][0].long() * 5

    out = CopyPaste(p=1.0)(a, b, np.random.default_rng(0))
    # instance 0 of a lies under the pasted one: dropped; instance 1 keeps its right part
    assert out["labels"].tolist() == [1, 4]
    assert out["boxes"].tolist() == [[28.0, 4.0, 40.0, 20.0], [0.0, 0.0, 28.0, 24.0]]
    assert out["masks"].shape == (2, 48, 48)
    assert out["masks"][0].sum() == 16 * 12 and torch.equal(out["masks"][1], b["masks"][0])
    pasted = b["masks"][0].bool()
    assert torch.equal(out["image"][:, pasted], b["image"][:, pasted])
    assert torch.equal(out["image"][:, ~pasted], a["image"][:, ~pasted])
    assert (out["semantic"][pasted] == 5).all() and (out["semantic"][4:20, 28:40] == 2).all()
    assert_consistent(out, (48, 48))


@pytest.mark.reliability
def test_copy_paste_without_instance_masks_names_the_step_and_the_sample():
    steps = [{"name": "Resize"}, {"name": "CopyPaste", "p": 0.3}]
    dataset = TransformedDataset(Samples(masks=False), pipeline(steps), reseed=True)
    with pytest.raises(SampleError) as caught:
        draw(dataset, 2)
    assert str(caught.value).startswith(
        "t[1] (CopyPaste): sample 2 (image id 3, mem/2.png) has no instance masks, and CopyPaste "
        "pastes objects by their masks"
    )


@pytest.mark.reliability
def test_copy_paste_on_a_box_only_model_stops_training_with_a_clear_error(tmp_path, capsys):
    data = make_coco(tmp_path / "data")
    steps = [{"name": "Resize"}, {"name": "CopyPaste"}]
    cfg = detection_config(tmp_path / "c.yaml", data, data={"transforms": {"train": steps}})
    code, _, err = run(["train", "--config", cfg], capsys)
    assert code == 1
    assert "data.transforms.train[1] (CopyPaste): sample " in err
    assert "has no instance masks, and CopyPaste pastes objects by their masks" in err


@pytest.mark.reliability
def test_multi_image_steps_out_of_place_are_refused(tmp_path, capsys):
    heads = {"det": {"name": "fcos"}}
    model = {"backbone": {"name": "simple_cnn"}, "heads": heads}
    train = [{"name": "Resize"}, {"name": "Mosaic"}, {"name": "CopyPaste"}, {"name": "Blur"}]
    nested = [{"name": "OneOf", "transforms": [{"name": "MixUp"}, {"name": "Blur"}]}]
    with pytest.raises(ConfigError) as caught:
        load_config({"model": model, "data": {"transforms": {"train": train + nested}}})
    assert caught.value.problems == [
        "data.transforms.train[1] (Mosaic): must be the first step of data.transforms.train (it "
        "assembles the raw images, which the following steps then crop, resize and flip), found "
        "at position 1",
        "data.transforms.train[2] (CopyPaste): must come after every per-sample step (it mixes "
        "the outputs of the whole per-sample pipeline on two samples), found before "
        "data.transforms.train[3] (Blur)",
        "data.transforms.train[4].transforms[0] (MixUp): a multi-image step cannot sit inside "
        "OneOf; give it its own p at the top level of data.transforms.train",
    ]
    # a val pipeline with Mosaic: refused, through the CLI, before anything is read
    data = make_coco(tmp_path / "data")
    val = {"val": [{"name": "Mosaic", "p": 1.0}, {"name": "Resize"}]}
    cfg = detection_config(tmp_path / "c.yaml", data, data, data={"transforms": val})
    code, _, err = run(["train", "--config", cfg], capsys)
    assert code == 2
    assert (
        "data.transforms.val[0] (Mosaic): a multi-image step (it mixes other samples of the "
        "dataset in) is allowed only in data.transforms.train; leave it out of the evaluation "
        "pipeline"
    ) in err


def test_mixing_parameters_are_validated_with_their_key_path():
    steps = [{"name": "MixUp", "p": 1.5, "alpha": 0}, {"name": "CopyPaste", "prob": 0.3}]
    with pytest.raises(ConfigError) as caught:
        load_config(
            {
                "model": {"heads": {"c": {"name": "linear", "num_classes": 2}}},
                "data": {"transforms": {"train": steps}},
            }
        )
    assert caught.value.problems == [
        "data.transforms.train[0].p (MixUp): expected a number from 0 to 1, got 1.5",
        "data.transforms.train[0].alpha (MixUp): expected a number, above 0, got 0",
        "data.transforms.train[1].prob: unknown parameter of CopyPaste; valid: p",
    ]


def test_a_tiny_training_run_with_mosaic_mixup_and_copy_paste(pyramid_config):
    from visionkit.engine.runner import train

    steps = [
        {"name": "Mosaic", "p": 1.0},
        {"name": "RandomResizedCrop", "scale": [0.5, 1.0]},
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "MixUp", "p": 1.0},
        {"name": "CopyPaste", "p": 1.0},
    ]
    heads = {"inst": {"name": "fcos_mask", "num_convs": 1}}
    cfg = pyramid_config("mix", heads, transforms={"train": steps}, batch_size=2)
    cfg["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    run_dir, _ = train(cfg)
    log = run_dir / "logs" / "metrics.csv"  # per step
    losses = [
        float(r["train/loss_step"]) for r in csv.DictReader(log.open()) if r["train/loss_step"]
    ]
    assert len(losses) == 2 and all(map(math.isfinite, losses)), losses
