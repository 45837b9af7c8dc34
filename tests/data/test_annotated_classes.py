"""A training mix of detection sets with other box classes: each sample carries the classes
its set annotates (``annotated_classes``: its entry's, else its own class list by the labels
it is merged into, else every class for a set of backgrounds) through the pipeline, the
multi-image steps (partners of its own set) and collate, so that the heads do not learn the
other sets' classes as background; a mix of sets with the same classes carries nothing, and
sets that give no boxes (or a model without a box head) carry nothing either. Training and
check-data say which set annotates which, and warn of a set that lists classes it has no box
of while another set has boxes of them."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import make_coco, run
from visionkit.build.data import annotation_notes, build_datasets
from visionkit.config import DataConfig, load_config
from visionkit.data import mixing
from visionkit.data.batch import collate
from visionkit.data.datasets import MixedDataset, TransformedDataset
from visionkit.data.image_size import with_image_size
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.transforms import build_pipeline
from visionkit.errors import ConfigError, DataError

PETS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
CARS = [{"id": 3, "name": "car"}]
EVERY = PETS + CARS  # one class list for both sets (as converted with one --classes file)


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


def vectors(train):
    return {name: v.tolist() for name, v in train.annotated.items()}


def data_config(sets, **train_keys):
    """A validated ``data`` section training on the COCO ``sets`` (name → folder); ``train_keys``:
    name → extra keys of that entry."""
    train = {
        name: {"format": "coco", "images": str(root), **train_keys.get(name, {})}
        for name, root in sets.items()
    }
    heads = {"det": {"name": "fcos", "num_convs": 1}}
    model = {"backbone": {"name": "simple_cnn"}, "neck": {"name": "fpn"}, "heads": heads}
    return load_config({"model": model, "data": {"train": train}}).data


# ------------------------------------------------------------- Mosaic / MixUp partners


@pytest.mark.parametrize("step", ["Mosaic", "MixUp"])
def test_an_image_mixed_by_a_multi_image_step_takes_the_others_from_its_own_set(tmp_path, step):
    # a mosaic of a pets photo and a roads photo annotated no class: it taught no negatives
    mixed = mix(tmp_path)
    steps = [{"name": "Mosaic", "p": 1.0}] if step == "Mosaic" else [{"name": "Resize"}]
    if step == "MixUp":
        steps.append({"name": "MixUp", "p": 1.0})
    data = TransformedDataset(mixed, pipeline(steps), reseed=True)
    own = {0: [True, True, False], 1: [False, False, True]}  # pets' images first, then roads'
    for seed in range(16):
        torch.manual_seed(seed)
        index = seed % len(mixed)
        out = data[index]
        assert out["annotated_classes"].tolist() == own[index >= 4]  # its set's classes
        theirs = {0, 1} if index < 4 else {2}
        assert set(out["labels"].tolist()) <= theirs  # every box from its own set
    assert list(mixed.partners_of(5)) == [4, 5, 6, 7]  # roads' images


def test_sets_annotating_the_same_classes_draw_partners_as_before(tmp_path):
    # the same random stream, the same draws: from the whole mix, as without sets
    mixed = mix(tmp_path, cars=PETS)
    assert mixed.annotated == {} and mixed.partners_of(5) == range(8)
    data = TransformedDataset(mixed, pipeline([{"name": "Mosaic", "p": 1.0}]))
    data.pipeline.random_generator = np.random.default_rng(7)
    whole = [int(i) for i in np.random.default_rng(7).integers(8, size=6)]
    assert mixing.draw(data, 6, 5) == whole
    data.pipeline.random_generator = np.random.default_rng(7)
    assert mixing.draw(data, 6) == whole


# ------------------------------------------------------------- what each set annotates


def test_an_entrys_annotated_classes_overrides_the_class_list_of_its_file(tmp_path):
    # both files list cat, dog, car (one class list for every set): nothing was masked
    pets = make_coco(tmp_path / "pets", edit=only([1, 2]), categories=EVERY)
    roads = make_coco(tmp_path / "roads", edit=only([3]), categories=EVERY)
    sets = {"pets": pets, "roads": roads}
    assert vectors(build_datasets(data_config(sets))["train"]) == {}
    data = data_config(sets, roads={"annotated_classes": ["car"]})
    assert data.train["roads"]["annotated_classes"] == ["car"]
    train = build_datasets(data)["train"]
    assert vectors(train) == {"pets": [True, True, True], "roads": [False, False, True]}
    assert train[4]["annotated_classes"].tolist() == [False, False, True]


def test_an_annotated_class_of_no_set_is_an_error_naming_the_key_and_the_classes(tmp_path):
    pets, roads = two_sets(tmp_path)
    data = data_config({"pets": pets, "roads": roads}, roads={"annotated_classes": ["truck"]})
    with pytest.raises(DataError) as err:
        build_datasets(data)
    assert "data.train.roads.annotated_classes: 'truck' is not a class of data.train" in str(
        err.value
    )
    assert "(its sets have: cat, dog, car)" in str(err.value)


def test_annotated_classes_leaving_out_a_class_the_set_has_boxes_of_is_an_error(tmp_path):
    pets, roads = two_sets(tmp_path)
    data = data_config({"pets": pets, "roads": roads}, pets={"annotated_classes": ["cat"]})
    with pytest.raises(DataError, match=r"data.train.pets.annotated_classes: leaves out dog, of"):
        build_datasets(data)


def test_annotated_classes_is_a_key_of_a_training_mix(tmp_path):
    pets, roads = two_sets(tmp_path)
    heads = {"det": {"name": "fcos", "num_convs": 1}}
    model = {"backbone": {"name": "simple_cnn"}, "neck": {"name": "fpn"}, "heads": heads}
    one = {"format": "coco", "images": str(pets), "annotated_classes": ["cat"]}
    with pytest.raises(ConfigError, match=r"data.train.annotated_classes: the box classes a set"):
        load_config({"model": model, "data": {"train": one}})
    empty = {"pets": {"format": "coco", "images": str(pets), "annotated_classes": []}}
    with pytest.raises(ConfigError, match=r"data.train.pets.annotated_classes"):
        load_config({"model": model, "data": {"train": empty}})
    # the training mix given again as data.val (a YAML anchor): read as the sets it names
    sets = {
        "pets": {"format": "coco", "images": str(pets), "annotated_classes": ["cat", "dog"]},
        "roads": {"format": "coco", "images": str(roads)},
    }
    cfg = load_config({"model": model, "data": {"train": sets, "val": sets}})
    assert "annotated_classes" not in cfg.data.val["pets"]
    assert cfg.data.train["pets"]["annotated_classes"] == ["cat", "dog"]


def test_a_set_of_backgrounds_without_categories_annotates_every_class(tmp_path):
    # its photos are negatives of every class (docs/faq.md), not of none
    def backgrounds(data):
        data["annotations"], data["categories"] = [], []

    main = make_coco(tmp_path / "main", categories=PETS)
    negatives = make_coco(tmp_path / "negatives", edit=backgrounds)
    train = build_datasets(data_config({"main": main, "negatives": negatives}))["train"]
    assert vectors(train) == {}  # every set annotates every class: nothing is masked
    assert "annotated_classes" not in train[len(train) - 1]
    assert train.box_classes["negatives"].tolist() == [True, True]
    assert annotation_notes(train) == (None, [])  # nor is a set without boxes warned of


def test_sets_without_boxes_annotate_no_box_class_and_carry_nothing(tmp_path):
    # image-level classes from a COCO file (instances: false): no box set, not 'none'
    def scenes(data):
        data["annotations"], data["categories"] = [], []
        for image in data["images"]:
            image["scene"] = "indoor" if image["id"] % 2 else "outdoor"

    boxed = make_coco(tmp_path / "boxed", categories=PETS)
    scene = make_coco(tmp_path / "scenes", edit=scenes)
    data = DataConfig(
        train={
            "boxed": {"format": "coco", "images": str(boxed)},
            "scenes": {
                "format": "coco",
                "images": str(scene),
                "instances": False,
                "class_field": "scene",
            },
        }
    )
    train = build_datasets(data)["train"]
    assert vectors(train) == {} and "annotated_classes" not in train[0]
    assert list(train.box_classes) == ["boxed"]
    assert annotation_notes(train) == (None, [])


def test_a_file_naming_two_categories_alike_annotates_both(tmp_path):
    # the vector was built by name: 'cat' (ids 1 and 3) marked one of them, not its own
    twice = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cat"}]
    a = make_coco(tmp_path / "a", edit=only([1, 2, 3]), categories=twice)
    b = make_coco(tmp_path / "b", edit=only([5]), categories=[{"id": 5, "name": "car"}])
    mixed = MixedDataset({"a": CocoDataset(a), "b": CocoDataset(b)}, {})
    assert mixed.label_names["instances"] == ["cat", "dog", "cat", "car"]
    assert vectors(mixed) == {"a": [True, True, True, False], "b": [False, False, False, True]}
    for i in range(4):  # each label of a is one it annotates
        sample = mixed[i]
        assert sample["annotated_classes"][sample["labels"]].all()


@pytest.mark.parametrize("needs", [["semantic"], ["class"]])
def test_without_a_box_head_nothing_is_attached_or_said(tmp_path, needs):
    pets, roads = two_sets(tmp_path)
    sets = {"pets": pets, "roads": roads}
    train = build_datasets(data_config(sets), needs=needs)["train"]
    assert train.annotated == {} and "annotated_classes" not in train[0]
    assert annotation_notes(train) == (None, [])
    assert list(train.partners_of(5)) == list(range(8))


# ------------------------------------------------------------- what training says


def test_training_says_which_set_annotates_which_classes(tmp_path, caplog):
    pets, roads = two_sets(tmp_path)
    with caplog.at_level(logging.INFO, logger="visionkit"):
        train = build_datasets(data_config({"pets": pets, "roads": roads}))["train"]
    assert np.array_equal(train[0]["annotated_classes"], [True, True, False])
    # said once, by the run on rank 0 (engine/runner.py): every DDP process builds the data
    assert not [r for r in caplog.records if "annotate different" in r.getMessage()]
    info, warnings = annotation_notes(train)
    assert info == (
        "data.train: the sets annotate different box classes (pets: cat, dog; roads: car); "
        "the detection heads' classification loss of each image leaves out the classes its "
        "set does not annotate (an object of such a class in its photos is neither learnt as "
        "one nor as background); Mosaic and MixUp mix each image with images of its own set"
    )
    assert warnings == []


def test_sets_with_the_same_classes_say_nothing_of_it(tmp_path):
    pets, roads = two_sets(tmp_path, cars=PETS)
    assert annotation_notes(
        build_datasets(data_config({"pets": pets, "roads": roads}))["train"]
    ) == (
        None,
        [],
    )


def make_yolo(root, names, lines):
    """A YOLO folder of 4 images whose label files hold ``lines`` in turn, classes.txt
    ``names``."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(4):
        Image.new("RGB", (64, 64), (200, 100, 50)).save(root / "images" / f"{i}.jpg")
        (root / "labels" / f"{i}.txt").write_text(lines[i % len(lines)])
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def test_sets_sharing_one_class_list_are_warned_of_the_classes_they_have_no_box_of(tmp_path):
    # YOLO sets with other classes share one class list (else their ids clash): every set
    # annotated every class, and nothing said so
    names = ["cat", "dog", "car"]
    pets = make_yolo(tmp_path / "pets", names, ["0 0.5 0.5 0.2 0.2\n", "1 0.5 0.5 0.2 0.2\n"])
    roads = make_yolo(tmp_path / "roads", names, ["2 0.5 0.5 0.2 0.2\n"])
    train = {
        "pets": {"format": "yolo", "root": str(pets)},
        "roads": {"format": "yolo", "root": str(roads)},
    }
    heads = {"det": {"name": "fcos", "num_convs": 1}}
    model = {"backbone": {"name": "simple_cnn"}, "neck": {"name": "fpn"}, "heads": heads}
    data = load_config({"model": model, "data": {"train": train}}).data
    info, warnings = annotation_notes(build_datasets(data)["train"])
    assert info is None
    assert warnings == [
        "data.train.pets has no box of car (roads has some): its images teach the detection "
        "heads that none is there; if pets does not annotate it, write "
        "data.train.pets.annotated_classes: [cat, dog]",
        "data.train.roads has no box of cat, dog (pets has some): its images teach the "
        "detection heads that none is there; if roads does not annotate them, write "
        "data.train.roads.annotated_classes: [car]",
    ]
    train["pets"]["annotated_classes"] = ["cat", "dog"]
    train["roads"]["annotated_classes"] = ["car"]
    data = load_config({"model": model, "data": {"train": train}}).data
    info, warnings = annotation_notes(build_datasets(data)["train"])
    assert "(pets: cat, dog; roads: car)" in info and warnings == []


def check_data_config(tmp_path, heads, sets):
    import yaml

    model = {"backbone": {"name": "simple_cnn"}, "neck": {"name": "fpn"}, "heads": heads}
    train = {name: {"format": "coco", "images": str(root)} for name, root in sets.items()}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model": model, "data": {"train": train, "val": None}}))
    return path


def test_check_data_warns_of_a_set_without_boxes_of_anothers_classes(tmp_path, capsys):
    pets = make_coco(tmp_path / "pets", edit=only([1, 2]), categories=EVERY)
    roads = make_coco(tmp_path / "roads", edit=only([3]), categories=EVERY)
    config = check_data_config(
        tmp_path, {"det": {"name": "fcos", "num_convs": 1}}, {"pets": pets, "roads": roads}
    )
    code, out, _ = run(["check-data", "--config", config, "--split", "train", "--fast"], capsys)
    assert code == 0, out
    assert "warning: data.train.roads has no box of cat, dog (pets has some)" in out
    assert "data.train.pets.annotated_classes: [cat, dog]" in out
    assert "2 problems (2 warnings)" in out or "2 warnings" in out


def test_check_data_of_a_model_without_a_box_head_says_nothing_of_box_classes(tmp_path, capsys):
    pets, roads = two_sets(tmp_path)
    heads = {"seg": {"name": "semantic_fpn", "num_classes": 3}}
    config = check_data_config(tmp_path, heads, {"pets": pets, "roads": roads})
    code, out, err = run(["check-data", "--config", config, "--split", "train", "--fast"], capsys)
    assert "annotate different box classes" not in out + err
    assert "has no box of" not in out + err
