"""LabelMe folders as they come from real use: a relative root, a json file beside them that is
not a LabelMe file, a byte-order mark, a truncated file, a split list naming a file twice,
``__ignore__`` regions and LabelMe's own ``labels.txt``, turned boxes, LabelMe's 1-bit masks,
and a wrong ``imageHeight``."""

from __future__ import annotations

import base64
import io
import json
import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.test_labelme import H, W, labelme_image, photos, read, shape
from tests.helpers import run
from visionkit.config.yaml_rules import load_yaml
from visionkit.data.convert.to_coco import convert
from visionkit.data.readers.labelme import LabelmeDataset
from visionkit.errors import ConfigError, VisionkitError
from visionkit.evaluation.tasks import TASKS

CAT = [[10, 10], [30, 10], [30, 30], [10, 30]]


def frames(root, n: int = 5):
    """``frame_<i>.jpg`` + ``.json``: a cat each, and a dog in the last only."""
    for i in range(n):
        shapes = [shape("cat", CAT)] + [shape("dog", [[40, 5], [60, 20]], "rectangle")] * (
            i == n - 1
        )
        labelme_image(root, f"frame_{i}", shapes)
    return root


def test_a_relative_root_with_a_split_is_read(tmp_path, monkeypatch, capsys):
    """``check-data --format labelme --root t8 --split train`` was a ValueError traceback
    (``'/abs/t8' is not in the subpath of 't8'``)."""
    photos(tmp_path / "t8", n=5)
    monkeypatch.chdir(tmp_path)
    assert run(["split", "t8", "--val", "0.2"], capsys)[0] == 0
    code, out, err = run(
        ["check-data", "--format", "labelme", "--root", "t8", "--split", "train"], capsys
    )
    assert code == 0, out + err
    assert len(read({"root": "t8", "split": "train"})) == 4


def test_a_labelme_folder_is_found_whose_first_json_file_is_not_one(tmp_path, capsys):
    """``annotations.json`` (written by ``visionkit convert``) sorts before ``frame_0.json``:
    ``split`` said the folder was no dataset, and the COCO reader's hint named
    ``annotations.json`` as the file to give."""
    root = frames(tmp_path / "photos")
    (root / "annotations.json").write_text(json.dumps({"images": [], "annotations": []}))
    code, out, err = run(["split", root, "--val", "0.2"], capsys)
    assert code == 0, out + err
    assert "format: labelme" in out
    assert (
        "1 json file without 'shapes' (not LabelMe files) left out of the lists: annotations.json"
        in out
    )
    entry = {"format": "coco", "images": str(root), "annotations": str(root / "val.json")}
    with pytest.raises(VisionkitError, match="holds LabelMe files, frame_0.json, ...: read them"):
        read(entry)


def test_split_lists_what_the_reader_reads_and_names_what_it_cannot_read(tmp_path, capsys):
    """A json file with a byte-order mark (the reader reads it) was left out of the lists, and
    a truncated one (an error for the reader) silently: its image was in no split."""
    root = frames(tmp_path / "photos", n=4)
    bom = root / "frame_1.json"
    bom.write_text(bom.read_text(encoding="utf-8"), encoding="utf-8-sig")
    (root / "frame_2.json").write_text('{"shapes": [{"label": "cat", "poi')
    code, out, err = run(["split", root, "--val", "0.25"], capsys)
    assert code == 0, out + err
    listed = [
        line
        for name in ("train", "val")
        for line in (root / "splits" / f"{name}.txt").read_text().split()
    ]
    assert sorted(listed) == [f"frame_{i}.json" for i in range(4)]
    assert "warning: 1 json file cannot be read, listed all the same: frame_2.json (not a " in out
    entry = {"format": "labelme", "root": str(root), "on_bad_label": "skip"}
    assert len(read(entry)) == 3  # the reader reads the one with a BOM, as split lists it


def test_a_json_file_listed_twice_is_read_once_with_a_warning(tmp_path, capsys):
    """It said ``f0.json: image f0.jpg is also the image of f0.json``, an error."""
    root = frames(tmp_path / "photos", n=2)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("frame_0\nframe_0.json\nframe_1.json\n")
    argv = ["check-data", "--format", "labelme", "--root", root, "--split", "val"]
    code, out, err = run(argv, capsys)
    assert code == 0, out + err
    assert "is also the image of" not in out
    assert "listed twice:" in out and "each read once: frame_0.json (2 times)" in out


def test_split_prints_every_label_as_class_names_so_each_split_numbers_alike(tmp_path, capsys):
    """A val split without the one file holding ``dog`` read ``cat`` as class 0 of 1, and the
    training split ``cat``, ``dog``: a class-mismatch error when training began."""
    root = frames(tmp_path / "photos", n=5)
    code, out, err = run(["split", root, "--val", "0.2", "--seed", "3"], capsys)
    assert code == 0, out + err
    assert "class_names: [cat, dog]" in out
    entry = load_yaml(re.search(r"data\.train='(\{.*\})'", out).group(1))  # as printed
    assert entry["class_names"] == ["cat", "dog"]
    for split in ("train", "val"):
        ds = read({**entry, "split": split})
        assert ds.label_names["instances"] == ["cat", "dog"]


def with_ignore_region(root):
    """One photo: a cat, a dog, and an ``__ignore__`` region over the right part."""
    labelme_image(
        root,
        "a",
        [
            shape("cat", CAT),
            shape("dog", [[34, 4], [46, 20]], "rectangle"),
            shape("__ignore__", [[48, 24], [63, 24], [63, 47], [48, 47]]),
        ],
    )
    return root


def test_ignore_shapes_are_ignore_regions_for_every_head_and_the_evaluation(tmp_path):
    """``__ignore__`` shapes were dropped: their region trained and scored as background, so
    a detection there was a false positive (labelme2voc paints them -1, ignored)."""
    root = with_ignore_region(tmp_path / "photos")
    ds = LabelmeDataset(str(root), masks=True, semantic=True)
    assert ds.label_names["instances"] == ["cat", "dog"]
    sample = ds[0]
    assert sample["labels"].tolist() == [0, 1]  # not an object to learn
    semantic = ds.semantic_mask(0)
    assert (semantic[25:47, 49:63] == 255).all() and semantic[20, 20] == 1
    crowds = [a for a in ds.coco_ground_truth()["annotations"] if a["iscrowd"]]
    assert sorted(a["category_id"] for a in crowds) == [1, 2]  # one per class
    evaluator = TASKS["detection"].evaluator("det", None, ds, None)
    boxes = [[10, 10, 30, 30], [34, 4, 46, 20], [50, 26, 60, 44], [50, 26, 60, 44]]
    evaluator.process(
        {"image_ids": torch.tensor([1])},
        [
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "scores": torch.tensor([0.9, 0.9, 0.95, 0.95]),
                "labels": torch.tensor([0, 1, 0, 1]),  # a cat and a dog in the ignored region
            }
        ],
    )
    assert evaluator.evaluate()["det/mAP"] == pytest.approx(1.0)


def test_labelmes_own_labels_txt_gives_no_phantom_classes(tmp_path, capsys, caplog):
    """LabelMe's ``labels.txt`` starts ``__ignore__``, ``_background_``: given as class names
    (``--classes``, ``class_names``) they were two classes no shape could have."""
    root = with_ignore_region(tmp_path / "photos")
    labels = tmp_path / "labels.txt"
    labels.write_text("__ignore__\n_background_\ncat\ndog\n")
    given = labels.read_text().split()
    with caplog.at_level(logging.INFO):
        ds = read({"root": str(root), "class_names": given})
    assert ds.label_names["instances"] == ["cat", "dog"]
    assert "class names ['__ignore__', '_background_'] left out" in caplog.text
    report = convert(root, tmp_path / "out.json", "labelme", classes=labels)
    categories = json.loads((tmp_path / "out.json").read_text())["categories"]
    assert [c["name"] for c in categories] == ["cat", "dog"] and report.images == 1


def test_crowds_objects_is_refused_for_labelme(tmp_path):
    with pytest.raises(ConfigError, match="format labelme takes no crowds: objects"):
        LabelmeDataset(str(with_ignore_region(tmp_path / "photos")), crowds="objects")


def test_an_ignore_shape_is_counted_once_not_once_per_class(tmp_path, capsys):
    """One ``__ignore__`` shape is a crowd region of every class: ``check-data`` said "2 crowd
    regions" for the one region drawn beside two classes, and ``convert`` counted it in each
    class ("cat: 2" for one cat drawn)."""
    root = with_ignore_region(tmp_path / "photos")
    code, out, _ = run(["check-data", "--format", "labelme", "--root", str(root)], capsys)
    assert code == 0
    assert "1 ignore region (__ignore__ shapes, each an iscrowd: 1 of every class)" in out
    assert "crowd regions" not in out
    report = convert(root, tmp_path / "out.json", "labelme")
    summary = report.summary()
    assert "1 image (0 without objects), 2 objects and 1 __ignore__ region (written as 2 " in (
        summary
    )
    assert "objects per class:\n  cat: 1\n  dog: 1\n" in summary
    coco = json.loads((tmp_path / "out.json").read_text())
    assert sorted(a["category_id"] for a in coco["annotations"] if a["iscrowd"]) == [1, 2]


def test_ignore_shapes_sharing_a_box_are_each_a_region_and_an_image_of_them_has_no_objects(
    tmp_path, capsys
):
    """``__ignore__`` regions were counted by (image, box): a rectangle and a triangle over
    the same box, or a shape drawn twice, were one region, though the converter writes each
    (the docs say "the shapes drawn"). An image with only ``__ignore__`` shapes was one
    "with annotations" to ``convert`` while ``check-data`` said "images without boxes: 1";
    one crowd annotation was "written as 1 crowd annotations"."""
    root = tmp_path / "photos"
    region = [[48, 24], [63, 24], [63, 47], [48, 47]]
    same_box = [[48, 24], [63, 24], [48, 47], [63, 47]]  # a bow tie: the rectangle's extent
    labelme_image(
        root,
        "a",
        [
            shape("cat", CAT),
            shape("dog", [[34, 4], [46, 20]], "rectangle"),
            shape("__ignore__", region),
            shape("__ignore__", same_box),
        ],
    )
    labelme_image(root, "b", [shape("__ignore__", region), shape("__ignore__", region)])
    code, out, _ = run(["check-data", "--format", "labelme", "--root", str(root)], capsys)
    assert code == 0
    assert "4 ignore regions (__ignore__ shapes, each an iscrowd: 1 of every class)" in out
    assert "images without boxes: 1: b.json" in out
    report = convert(root, tmp_path / "out.json", "labelme")
    assert report.summary().splitlines()[0] == (
        "converted labelme -> coco: 2 images (1 without objects), 2 objects and 4 __ignore__ "
        "regions (written as 8 crowd annotations: one per class)"
    )
    coco = json.loads((tmp_path / "out.json").read_text())
    assert sum(a["iscrowd"] for a in coco["annotations"]) == 8  # 4 regions x 2 classes
    one = tmp_path / "one"
    labelme_image(one, "a", [shape("cat", CAT), shape("__ignore__", region)])
    summary = convert(one, tmp_path / "one.json", "labelme").summary()
    assert "1 object and 1 __ignore__ region (written as 1 crowd annotation: one per class)" in (
        summary
    )


def test_labels_differing_only_in_case_are_logged_with_their_files(tmp_path, caplog):
    """``Cat`` in one file beside ``cat`` in the others became two classes silently (the VOC
    reader warned of its object names so); the log names the file that writes the odd one."""
    root = photos(tmp_path / "photos", n=3)
    odd = root / "IMG_1.json"
    odd.write_text(odd.read_text().replace('"label": "dog"', '"label": "Dog "'))
    with caplog.at_level(logging.WARNING):
        ds = read({"root": str(root)})
    assert ds.label_names["instances"] == ["Dog", "ball", "cat", "dog"]
    assert (
        "labels that differ only in case or spaces are separate classes: 'Dog' in 1 file "
        "(IMG_1.json); 'dog' in 2 files (IMG_0.json, IMG_2.json); fix the files" in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        read({"root": str(root), "class_names": ["cat", "dog", "Dog", "ball"]})
    assert "differ only in case" not in caplog.text  # the user's own list: taken as it is


def test_an_oriented_rectangle_is_read_as_its_polygon(tmp_path):
    """LabelMe's turned box (its 4 corners) was left out: the image trained as a negative."""
    root = tmp_path / "photos"
    diamond = [[30, 4], [46, 20], [30, 36], [14, 20]]
    labelme_image(root, "a", [shape("tag", diamond, "oriented_rectangle")])
    sample = read({"root": str(root)})[0]
    assert sample["boxes"].tolist() == [[14.0, 4.0, 46.0, 36.0]]
    assert 2 * 16 * 16 - 40 < sample["masks"][0].sum() < 2 * 16 * 16 + 40  # the diamond


def test_a_one_bit_mask_as_labelme_saves_it_is_read(tmp_path):
    """LabelMe saves a mask shape as a PNG of mode ``1``: it was refused ("a label image in
    mode 1")."""
    crop = np.zeros((6, 11), bool)
    crop[1:5, 2:9] = True
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "1"
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    root = tmp_path / "photos"
    labelme_image(root, "a", [shape("blob", [[20, 10], [30, 15]], "mask", mask=png)])
    mask = read({"root": str(root)})[0]["masks"][0]
    expected = np.zeros((H, W), np.uint8)
    expected[10:16, 20:31] = crop
    assert (mask == expected).all()


def test_a_wrong_image_height_names_the_json_file_and_its_image(tmp_path, capsys):
    root = frames(tmp_path / "photos", n=2)
    doc = json.loads((root / "frame_1.json").read_text())
    doc["imageHeight"] = H + 2
    (root / "frame_1.json").write_text(json.dumps(doc))
    code, out, _ = run(["check-data", "--format", "labelme", "--root", root], capsys)
    assert code == 1
    assert (
        f"size mismatch: frame_1.json (image frame_1.jpg, image id 2): the annotation file says "
        f"{H + 2}x{W}"
    ) in out
