"""Issue 18 item 11: a mix of datasets whose class lists differ is merged by name (each
part's labels moved to the merged order), or refused when the parts disagree on an id."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_coco, write_image
from visionkit.build.data import build_datasets
from visionkit.config import DataConfig
from visionkit.data.datasets import MixedDataset
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.folder import ImageFolderDataset
from visionkit.errors import DataError

pytestmark = pytest.mark.reliability


def coco(root, categories, **kw):
    """The helpers' COCO data: image ``i`` has one box of category ``categories[i % 2]``
    (of the first when there is one category)."""
    ids = [c["id"] for c in categories]

    def edit(data):
        for ann in data["annotations"]:
            ann["category_id"] = ids[ann["image_id"] % len(ids)]

    return CocoDataset(make_coco(root, categories=categories, edit=edit), **kw)


def test_parts_with_other_classes_are_merged_by_id_and_their_labels_moved(tmp_path):
    squares = [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]
    first = coco(tmp_path / "a", squares, semantic=True)
    second = coco(
        tmp_path / "b", [{"id": 2, "name": "disc"}, {"id": 3, "name": "star"}], semantic=True
    )
    mixed = MixedDataset({"a": first, "b": second}, {})
    assert mixed.label_names["instances"] == ["square", "disc", "star"]
    assert mixed.category_ids == [1, 2, 3]
    assert mixed.label_names["semantic"] == ["background", "square", "disc", "star"]
    assert "a" not in mixed.mappings  # the first part's labels already mean the same
    for i in range(len(second)):
        own, merged = second[i], mixed[len(first) + i]
        assert merged["labels"].tolist() == [own["labels"][0] + 1]  # disc 0 -> 1, star 1 -> 2
        assert set(np.unique(merged["semantic"])) == {0, own["labels"][0] + 2}
    assert [mixed[i]["labels"].tolist() for i in range(len(first))] == [
        first[i]["labels"].tolist() for i in range(len(first))
    ]


def test_folders_with_other_class_folders_are_merged_by_name(tmp_path):
    for name in ("cat", "dog"):
        write_image(tmp_path / "pets" / name / "0.png")
    write_image(tmp_path / "dogs" / "dog" / "0.png")
    pets, dogs = ImageFolderDataset(tmp_path / "pets"), ImageFolderDataset(tmp_path / "dogs")
    assert dogs[0]["class"] == 0  # the dogs folder's own label 0
    mixed = MixedDataset({"pets": pets, "dogs": dogs}, {})
    assert mixed.label_names == {"class": ["cat", "dog"]} and mixed.category_ids == []
    assert mixed[len(pets)]["class"] == 1


def test_parts_naming_one_id_differently_are_refused(tmp_path):
    first = coco(tmp_path / "a", [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}])
    second = coco(tmp_path / "b", [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}])
    with pytest.raises(DataError) as info:
        MixedDataset({"a": first, "b": second}, {})
    text = str(info.value)
    assert "the mixed datasets disagree on their classes" in text
    a, b = first.ann_path, second.ann_path
    assert f"category id 1 is 'square' in a ({a}) but 'disc' in b ({b})" in text
    assert f"'disc' is category id 2 in a ({a}) but id 1 in b ({b})" in text


def test_parts_giving_one_class_two_ids_are_refused_when_the_config_is_built(tmp_path):
    make_coco(tmp_path / "a", categories=[{"id": 1, "name": "square"}], edit=_all_category(1))
    make_coco(tmp_path / "b", categories=[{"id": 5, "name": "square"}], edit=_all_category(5))
    data = DataConfig(
        train={
            "a": {"format": "coco", "images": str(tmp_path / "a")},
            "b": {"format": "coco", "images": str(tmp_path / "b")},
        }
    )
    with pytest.raises(DataError, match=r"'square' is category id 1 in a \(.*\) but id 5 in b"):
        build_datasets(data)


def _all_category(category_id):
    def edit(data):
        for ann in data["annotations"]:
            ann["category_id"] = category_id

    return edit


def test_check_data_of_the_training_split_alone_reports_a_class_conflict(tmp_path, capsys):
    """`check-data --split train` checked each part alone: "no problems found", then
    training stopped on the parts' conflicting ids (and its hint sent the user back to
    check-data)."""
    import yaml

    from tests.helpers import run

    make_coco(tmp_path / "a", categories=[{"id": 1, "name": "square"}], edit=_all_category(1))
    make_coco(tmp_path / "b", categories=[{"id": 5, "name": "square"}], edit=_all_category(5))
    config = tmp_path / "mix.yaml"
    parts = {n: {"format": "coco", "images": str(tmp_path / n)} for n in ("a", "b")}
    config.write_text(
        yaml.safe_dump({"model": {"heads": {"det": {"name": "fcos"}}}, "data": {"train": parts}})
    )
    code, out, _ = run(["check-data", "--config", config, "--split", "train"], capsys)
    assert code == 1
    assert "data.train: the mixed datasets disagree on their classes" in out
    assert "'square' is category id 1 in a" in out


def test_check_data_warns_of_a_part_whose_labels_no_head_learns_from(tmp_path, capsys):
    """A class folder beside a COCO set, with a detector only: its images took a place in
    every batch and trained nothing, without a word."""
    import yaml

    from tests.helpers import run

    make_coco(tmp_path / "boxes")
    write_image(tmp_path / "pets" / "cat" / "0.png")
    parts = {
        "boxes": {"format": "coco", "images": str(tmp_path / "boxes")},
        "pets": {"format": "folder", "root": str(tmp_path / "pets")},
    }
    config = tmp_path / "mix.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"heads": {"det": {"name": "fcos"}}}, "data": {"train": parts}})
    )
    code, out, _ = run(["check-data", "--config", config], capsys)
    assert code == 0
    assert "warning: data.train.pets: no head learns from its image-level classes" in out
    assert "data.train.boxes: no head" not in out
