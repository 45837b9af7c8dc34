"""The training/validation loaders of VisionDataModule: what the samples carry."""

from __future__ import annotations

import pytest

from visionkit.build import (
    boxes_needed,
    build_datasets,
    build_pipelines,
    dropped_keys,
    targets_needed,
)
from visionkit.config import load_config
from visionkit.engine.datamodule import VisionDataModule

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_boxes_needed_only_for_box_heads(tiny_config, pyramid_config):
    assert not boxes_needed(load_config(tiny_config))
    det = {"det": {"name": "fcos", "num_classes": 3}}
    assert boxes_needed(load_config(pyramid_config("det", det)))
    seg = {"seg": {"name": "semantic_fpn", "num_classes": 4}}
    assert not boxes_needed(load_config(pyramid_config("seg", seg)))
    both = {**seg, "det": det["det"]}
    assert boxes_needed(load_config(pyramid_config("both", both)))


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_model_without_a_box_head_gets_batches_without_boxes(tiny_config, split):
    cfg = load_config(tiny_config)
    datasets = build_datasets(cfg.data, needs=targets_needed(cfg))
    assert "boxes" in datasets[split][0]  # the COCO reader has them
    # a classifier: the box classes each set annotates (a mix of detection sets) go too
    assert dropped_keys(cfg) == ("boxes", "labels", "masks", "annotated_classes")

    def first_batch(drop):
        pipelines = build_pipelines(cfg.data, MEAN, STD)
        module = VisionDataModule(
            datasets, pipelines, cfg.data.batch_size, num_workers=cfg.data.num_workers, drop=drop
        )
        return next(iter(getattr(module, f"{split}_dataloader")()))

    batch = first_batch(dropped_keys(cfg))
    assert "boxes" not in batch and "labels" not in batch
    assert batch["images"].shape == (16, 3, 64, 64) and batch["class"].shape == (16,)
    with_boxes = first_batch(())
    assert len(with_boxes["boxes"]) == 16
    if split == "val":  # same images and classes either way
        assert (with_boxes["images"] == batch["images"]).all()
        assert (with_boxes["class"] == batch["class"]).all()
