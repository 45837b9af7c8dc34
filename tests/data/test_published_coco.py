"""COCO json as annotation tools publish it: Roboflow's ``_annotations.coco.json`` in each
split folder with a placeholder category, and the hints for a json that is not where the
entry says."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import detection_config, make_coco
from visionkit.cli import main
from visionkit.data.readers.coco import CocoDataset
from visionkit.errors import AnnotationError, DataError


def roboflow_split(root):
    """A split folder as Roboflow exports it: images beside ``_annotations.coco.json``, whose
    category 0 is the project ("shapes"), the supercategory of the real ones (ids 1, 2)."""

    def placeholder(data):
        data["categories"] = [
            {"id": 0, "name": "shapes", "supercategory": "none"},
            {"id": 1, "name": "square", "supercategory": "shapes"},
            {"id": 2, "name": "disc", "supercategory": "shapes"},
        ]

    make_coco(root, edit=placeholder)
    (root / "annotations.json").rename(root / "_annotations.coco.json")
    return root


def test_a_roboflow_split_folder_is_read_without_its_placeholder_category(tmp_path):
    root = roboflow_split(tmp_path / "train")
    ds = CocoDataset(root)  # the json found without annotations:
    assert ds.ann_path.name == "_annotations.coco.json"
    assert ds.label_names["instances"] == ["square", "disc"]
    assert ds.category_ids == [1, 2]
    assert [s["labels"].tolist() for s in map(ds.__getitem__, range(2))] == [[1], [0]]
    (warning,) = ds.report.warnings
    assert warning.kind == "placeholder category"
    assert str(warning).startswith("category id 0 'shapes': no annotation uses it")


def test_a_used_or_independent_category_is_never_taken_for_a_placeholder(tmp_path):
    root = roboflow_split(tmp_path / "used")
    data = json.loads((root / "_annotations.coco.json").read_text())
    data["annotations"][0]["category_id"] = 0  # now it holds objects: a class
    (root / "_annotations.coco.json").write_text(json.dumps(data))
    assert CocoDataset(root).label_names["instances"] == ["shapes", "square", "disc"]
    plain = make_coco(tmp_path / "plain")  # no supercategory: every category stays
    assert len(CocoDataset(plain).label_names["instances"]) == 2


def test_a_missing_or_folder_annotations_entry_names_the_json_files_there(tmp_path):
    root = roboflow_split(tmp_path / "train")
    with pytest.raises(AnnotationError) as info:
        CocoDataset(root, annotations=str(root / "instances.json"))
    assert f"({root} holds _annotations.coco.json: give annotations: " in str(info.value)
    (tmp_path / "ann").mkdir()
    shutil.copy(root / "_annotations.coco.json", tmp_path / "ann" / "instances_default.json")
    with pytest.raises(AnnotationError, match="is a folder; annotations: names the json file"):
        CocoDataset(root, annotations=str(tmp_path / "ann"))
    with pytest.raises(AnnotationError, match="holds instances_default.json"):
        CocoDataset(root, annotations=str(tmp_path / "ann"))


def test_images_one_folder_off_are_found_and_named_in_the_error(tmp_path, capsys):
    """CVAT writes file_name with or without images/: pointing images: one folder too deep
    (or too high) misses every file; the error names the folder that holds them."""
    root = make_coco(tmp_path / "cvat")  # file_name: images/<i>.png under cvat/
    with pytest.raises(DataError) as info:
        CocoDataset(root / "images", annotations=str(root / "annotations.json"))
    lines = str(info.value).splitlines()
    assert "missing file: images/1.png (image id 1): file not found" in str(info.value)
    assert lines[-1] == (
        f"  hint: the missing images are under {root}, not {root / 'images'} (file_name "
        f"entries are relative to the entry's images: folder): give images: {root}"
    )
    (root / "images" / "2.png").unlink()  # one really missing: where it was looked for
    with pytest.raises(DataError, match=f"was looked for as {root / 'images' / '2.png'}"):
        CocoDataset(root)
    code = main(["train", "--config", str(detection_config(tmp_path / "c.yaml", root, root))])
    err = capsys.readouterr().err
    assert code == 1 and "on_bad_image: skip (e.g. data.train.on_bad_image=skip " in err


def test_a_coco_json_given_to_the_voc_recipe_says_how_to_give_a_coco_entry(tmp_path, capsys):
    root = roboflow_split(tmp_path / "train")
    recipe = "configs/custom/detect_fcos_r18.yaml"
    ann = root / "_annotations.coco.json"
    overrides = [f"data.{s}.{k}={v}" for s in ("train", "val") for k, v in (("images", root),
                 ("annotations", ann))]  # fmt: skip
    code = main(["train", "--config", recipe, *overrides])
    err = capsys.readouterr().err
    assert code == 2 and "data.train.root: not set" in err
    assert (
        f"for a COCO json give the whole entry: data.train='{{format: coco, images: {root}, "
        f"annotations: {ann}}}'" in err
    )
    code = main(["check-data", "--format", "voc", "--root", str(root)])
    out = capsys.readouterr().out
    assert code == 1 and "it holds _annotations.coco.json: a COCO json is read with" in out


def test_absolute_paths_of_another_machine_are_refused_with_where_the_images_are(tmp_path):
    """Label Studio writes its upload folder (/data/upload/1/x.jpg) into file_name."""

    def uploaded(data):
        for image in data["images"]:
            image["file_name"] = "/data/upload/1/" + image["file_name"].split("/")[-1]

    root = make_coco(tmp_path / "ls", edit=uploaded)
    with pytest.raises(AnnotationError) as info:
        CocoDataset(root / "images", annotations=str(root / "annotations.json"))
    assert str(info.value).splitlines()[-1] == (
        f"  hint: 4 of these file names are in {root / 'images'} itself: the json names the "
        "images where it was written (Label Studio's upload folder, another machine); write "
        "file_name relative to the image folder (the file name alone, e.g. 1.png) to read them"
    )
    # Label Studio's export: result.json beside images/, given as the image folder.
    with pytest.raises(AnnotationError) as info:
        CocoDataset(root, annotations=str(root / "annotations.json"))
    assert str(info.value).splitlines()[-1] == (
        f"  hint: 4 of these file names are in {root / 'images'}: the json names the images "
        "where it was written (Label Studio's upload folder, another machine); write file_name "
        "relative to the image folder (images/<file name>, e.g. images/1.png) to read them"
    )


def test_a_missing_json_names_cvat_annotations_folder_and_roboflow_split_folders(tmp_path):
    """CVAT's COCO 1.0 export: annotations/instances_default.json beside images/, found neither
    from the export's folder nor from images/; Roboflow's export folder: one json per split
    folder. The error says which json, or which folder, to give."""
    cvat = make_coco(tmp_path / "cvat")
    (cvat / "annotations.json").rename(cvat / "instances_default.json")
    (cvat / "annotations").mkdir()
    (cvat / "instances_default.json").rename(cvat / "annotations" / "instances_default.json")
    wanted = cvat / "annotations" / "instances_default.json"
    for images in (cvat, cvat / "images"):
        with pytest.raises(AnnotationError) as info:
            CocoDataset(images)
        assert str(info.value).endswith(
            f"({cvat / 'annotations'} holds instances_default.json: give annotations: {wanted})"
        )
    export = tmp_path / "export"
    for split in ("train", "valid"):
        roboflow_split(export / split)
    with pytest.raises(AnnotationError) as info:
        CocoDataset(export)
    assert str(info.value).endswith(
        "(its sub-folders train, valid each hold _annotations.coco.json, a split each, as "
        f"Roboflow exports them: give each split's folder, e.g. images: {export / 'train'})"
    )


def test_a_json_given_as_the_image_folder_says_how_a_coco_json_is_given(tmp_path):
    root = roboflow_split(tmp_path / "valid")
    json_file = root / "_annotations.coco.json"
    with pytest.raises(DataError) as info:
        CocoDataset(json_file)
    assert str(info.value) == (
        f"dataset root {json_file} is a file, not a folder; a COCO json is read with format: "
        f"coco, annotations: {json_file}, images: the folder its file_name entries are "
        "relative to"
    )
