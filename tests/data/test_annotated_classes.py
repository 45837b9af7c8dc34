"""A training mix of detection sets with other box classes: each sample carries the classes
its set annotates (``annotated_classes``) through the pipeline, the multi-image steps
(intersected) and collate, so that the heads do not learn the other sets' classes as
background; a mix of sets with the same classes carries nothing."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.helpers import make_coco
from visionkit.build.data import build_datasets
from visionkit.config import DataConfig
from visionkit.data.batch import collate
from visionkit.data.datasets import MixedDataset, TransformedDataset
from visionkit.data.image_size import with_image_size
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.transforms import build_pipeline

PETS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
CARS = [{"id": 3, "name": "car"}]


def only(ids):
    """``make_coco``'s edit: image ``i``'s box is of category ``ids[i % len(ids)]``."""

    def edit(data):
        for ann in data["annotations"]:
            ann["category_id"] = ids[ann["image_id"] % len(ids)]

    return edit


def two_sets(tmp_path, cars=CARS):
    pets = make_coco(tmp_path / "pets", edit=only([1, 2]), categories=PETS)
    roads = make_coco(tmp_path / "roads", edit=only([c["id"] for c in cars]), categories=cars)
    return pets, roads


def mix(tmp_path, cars=CARS):
    pets, roads = two_sets(tmp_path, cars)
    return MixedDataset({"pets": CocoDataset(pets), "roads": CocoDataset(roads)}, {})


def pipeline(steps):
    return build_pipeline([with_image_size(s, 32) for s in steps], (0,) * 3, (1,) * 3, "t")


def test_the_vector_travels_from_each_set_through_the_pipeline_and_collate(tmp_path):
    mixed = mix(tmp_path)
    assert mixed.label_names["instances"] == ["cat", "dog", "car"]
    assert {k: v.tolist() for k, v in mixed.annotated.items()} == {
        "pets": [True, True, False],
        "roads": [False, False, True],
    }
    data = TransformedDataset(mixed, pipeline([{"name": "Resize"}]))
    batch = collate([data[0], data[4], data[1]])  # pets, roads, pets
    assert batch["annotated_classes"].dtype == torch.bool
    assert batch["annotated_classes"].tolist() == [
        [True, True, False],
        [False, False, True],
        [True, True, False],
    ]
    assert batch["labels"][1].tolist() == [2]  # the car, at its merged label


def test_sets_annotating_the_same_classes_carry_nothing(tmp_path):
    mixed = mix(tmp_path, cars=PETS)  # both sets: cat, dog
    assert mixed.annotated == {}
    data = TransformedDataset(mixed, pipeline([{"name": "Resize"}]))
    assert "annotated_classes" not in data[0]
    assert "annotated_classes" not in collate([data[0], data[4]])


def test_an_image_without_the_vector_annotates_every_class_in_a_batch():
    image = {"image": torch.zeros(3, 32, 32), "image_id": 1, "orig_size": (32, 32)}
    samples = [
        {**image, "image_size": (32, 32), "annotated_classes": torch.tensor([True, False])},
        {**image, "image_size": (32, 32)},
    ]
    assert collate(samples)["annotated_classes"].tolist() == [[True, False], [True, True]]


@pytest.mark.parametrize("step", ["Mosaic", "MixUp"])
def test_an_image_mixed_from_two_sets_annotates_what_both_annotate(tmp_path, step):
    mixed = mix(tmp_path)
    steps = [{"name": "Mosaic", "p": 1.0}] if step == "Mosaic" else [{"name": "Resize"}]
    if step == "MixUp":
        steps.append({"name": "MixUp", "p": 1.0})
    data = TransformedDataset(mixed, pipeline(steps), reseed=True)
    own = {0: [True, True, False], 1: [False, False, True]}  # pets' images first, then roads'
    mixed_sets = 0
    for seed in range(12):
        torch.manual_seed(seed)
        index = seed % len(mixed)
        out = data[index]
        vector, labels = out["annotated_classes"].tolist(), set(out["labels"].tolist())
        mine = own[index >= 4]
        assert all(v <= m for v, m in zip(vector, mine, strict=True))  # never more than its set
        if labels & {0, 1} and labels & {2}:  # boxes of both sets: cat, dog ∩ car = nothing
            assert vector == [False, False, False]
            mixed_sets += 1
    assert mixed_sets  # some draws did mix the sets


def test_training_logs_which_set_annotates_which_classes(tmp_path, caplog):
    pets, roads = two_sets(tmp_path)
    data = DataConfig(
        train={
            "pets": {"format": "coco", "images": str(pets)},
            "roads": {"format": "coco", "images": str(roads)},
        }
    )
    with caplog.at_level(logging.INFO, logger="visionkit"):
        train = build_datasets(data)["train"]
    assert np.array_equal(train[0]["annotated_classes"], [True, True, False])
    said = [r.getMessage() for r in caplog.records if "annotate different" in r.getMessage()]
    assert said == [
        "data.train: the sets annotate different box classes (pets: cat, dog; roads: car); "
        "the detection heads' classification loss of each image leaves out the classes its "
        "set does not annotate (an object of such a class in its photos is neither learnt as "
        "one nor as background); an image mixed from several sets (Mosaic, MixUp) counts the "
        "classes all of them annotate"
    ]


def test_sets_with_the_same_classes_log_nothing_of_it(tmp_path, caplog):
    pets, roads = two_sets(tmp_path, cars=PETS)
    data = DataConfig(
        train={
            "pets": {"format": "coco", "images": str(pets)},
            "roads": {"format": "coco", "images": str(roads)},
        }
    )
    with caplog.at_level(logging.INFO, logger="visionkit"):
        build_datasets(data)
    assert not [r for r in caplog.records if "annotate different" in r.getMessage()]
