"""VOC and YOLO to COCO: exact boxes, difficult objects, defaults, polygons, negatives, every
error in one report, the source left untouched, and the result read back, trained on and
converted from the command line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run as run_cli
from visionkit.cli import main
from visionkit.data.convert.to_coco import convert, to_coco
from visionkit.data.convert.voc import voc_folders
from visionkit.data.readers.coco import CocoDataset
from visionkit.errors import AnnotationError, DataError

# ---------------------------------------------------------------------------------- builders


def voc_object(name, box, difficult=None, truncated=None, pose=None):
    tags = "".join(
        f"<{k}>{v}</{k}>"
        for k, v in (("pose", pose), ("truncated", truncated), ("difficult", difficult))
        if v is not None
    )
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name>{tags}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def voc_xml(objects, filename=None, size=None):
    head = f"<filename>{filename}</filename>" if filename else ""
    if size:
        head += f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    return f"<annotation><folder>VOC</folder>{head}{''.join(objects)}</annotation>"


def make_voc(root: Path, entries: dict[str, tuple[tuple[int, int], str]], ext=".jpg") -> Path:
    """``entries``: id -> ((width, height) of the image, xml text)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for image_id, ((w, h), xml) in entries.items():
        Image.new("RGB", (w, h), (40, 80, 120)).save(root / "JPEGImages" / f"{image_id}{ext}")
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    return root


def make_yolo(root: Path, images: dict[str, tuple[int, int]], labels: dict[str, str], **names):
    """``images``: path under images/ -> (w, h); ``labels``: path under labels/ -> text;
    ``names``: file name -> content (classes.txt, data.yaml)."""
    for rel, (w, h) in images.items():
        path = root / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (200, 100, 50)).save(path)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for rel, text in labels.items():
        path = root / "labels" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, text in names.items():
        (root / name.replace("_", ".")).write_text(text)
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def anns_of(coco, image_id):
    return [a for a in coco["annotations"] if a["image_id"] == image_id]


# ---------------------------------------------------------------------------------- VOC


def test_voc_boxes_follow_the_one_based_inclusive_convention(tmp_path):
    src = make_voc(
        tmp_path / "voc",
        {
            "000001": (
                (64, 48),
                voc_xml(
                    [
                        voc_object("dog", (11, 6, 30, 25), 0, 0, "Left"),
                        voc_object("cat", (1, 1, 64, 48)),
                    ],
                    "000001.jpg",
                    (64, 48),
                ),
            ),
            "000002": ((40, 32), voc_xml([], "000002.jpg", (40, 32))),
        },
    )
    coco, skipped, *_ = to_coco(src, "voc")
    assert skipped == []
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        (1, "JPEGImages/000001.jpg", 64, 48),
        (2, "JPEGImages/000002.jpg", 40, 32),
    ]
    dog, cat = anns_of(coco, 1)
    assert dog["bbox"] == [10, 5, 20, 20] and dog["area"] == 400 and dog["category_id"] == 2
    assert (dog["iscrowd"], dog["difficult"], dog["truncated"], dog["pose"]) == (0, 0, 0, "Left")
    assert cat["bbox"] == [0, 0, 64, 48] and cat["area"] == 64 * 48 and cat["category_id"] == 1
    assert anns_of(coco, 2) == []


def test_voc_difficult_is_crowd_and_missing_tags_get_defaults(tmp_path):
    src = make_voc(
        tmp_path / "voc",
        {
            # no <filename>, no <size>: the png with this stem, its size from the header
            "a": (
                (48, 40),
                voc_xml(
                    [
                        voc_object("cat", (5, 5, 14, 24), difficult=1),
                        voc_object("cat", (41, 31, 60, 50)),  # clipped to the image
                        voc_object("cat", (100, 100, 120, 120)),  # outside: skipped
                    ]
                ),
            )
        },
        ext=".png",
    )
    coco, skipped, *_ = to_coco(src, "voc")
    assert coco["images"] == [{"id": 1, "file_name": "JPEGImages/a.png", "width": 48, "height": 40}]
    hard, clipped = coco["annotations"]
    assert hard["iscrowd"] == 1 and hard["difficult"] == 1 and hard["bbox"] == [4, 4, 10, 20]
    assert (clipped["iscrowd"], clipped["difficult"], clipped["truncated"]) == (0, 0, 0)
    assert clipped["pose"] == "Unspecified"
    assert clipped["bbox"] == [40, 30, 8, 10]
    assert len(skipped) == 1 and "Annotations/a.xml object 3" in skipped[0]


def test_voc_split_file_and_classes_file_set_images_and_category_order(tmp_path):
    xml = voc_xml([voc_object("dog", (1, 1, 10, 10))], size=(32, 32))
    src = make_voc(tmp_path / "voc", {"x1": ((32, 32), xml), "x2": ((32, 32), xml)})
    (src / "ImageSets" / "Main").mkdir(parents=True)
    (src / "ImageSets" / "Main" / "val.txt").write_text("x2\n\n")
    names = tmp_path / "names.txt"
    names.write_text("bird\ndog\n")
    coco, *_ = to_coco(src, "voc", split="val", classes=names)
    assert [i["file_name"] for i in coco["images"]] == ["JPEGImages/x2.jpg"]
    assert [c["name"] for c in coco["categories"]] == ["bird", "dog"]
    assert coco["annotations"][0]["category_id"] == 2
    with pytest.raises(
        DataError,
        match=r"split file .*test.txt does not exist \(splits in .*: \['val'\]\); to hold out "
        r"a test split too: visionkit split .* --val 0\.2 --test 0\.1 --overwrite",
    ):
        to_coco(src, "voc", split="test")


def test_voc_problems_are_reported_together(tmp_path):
    src = make_voc(
        tmp_path / "voc",
        {
            "ok": ((32, 32), voc_xml([voc_object("dog", (1, 1, 5, 5))], size=(32, 32))),
            "bad_xml": ((32, 32), "<annotation><object></annotation>"),
            "bad_class": (
                (32, 32),
                voc_xml([voc_object("dog", (1, 1, 5, 5)), voc_object("cow", (1, 1, 5, 5))]),
            ),
            "bad_box": ((32, 32), voc_xml([voc_object("dog", (20, "x", 10, 5))])),
            "swapped": ((32, 32), voc_xml([voc_object("dog", (20, 1, 10, 5))])),
            "bad_flag": ((32, 32), voc_xml([voc_object("dog", (1, 1, 5, 5), difficult="yes")])),
            "no_image": ((32, 32), voc_xml([], filename="gone.jpg")),
            "same_image": ((32, 32), voc_xml([], filename="ok.jpg")),
            "escape": ((32, 32), voc_xml([], filename="../../secret.jpg")),
            "escape_ok": ((32, 32), voc_xml([], filename="../../secret.jpg")),
        },
    )
    (src / "JPEGImages" / "no_image.jpg").unlink()
    (src / "JPEGImages" / "same_image.jpg").unlink()  # else its own image, <filename> stale
    (src / "JPEGImages" / "escape.jpg").rename(tmp_path / "secret.jpg")  # there, but outside
    names = tmp_path / "names.txt"
    names.write_text("dog\n")
    with pytest.raises(AnnotationError) as info:
        to_coco(src, "voc", classes=names)
    message = str(info.value)
    assert "cannot convert the VOC annotations (errors in 8 of 10 XML files): 8 problems" in (
        message
    )
    problems = info.value.problems
    assert any("Annotations/bad_xml.xml: malformed XML" in p for p in problems)
    assert any(
        "Annotations/bad_class.xml object 2: unknown class 'cow' (classes: ['dog'])" in p
        for p in problems
    )
    assert "Annotations/bad_box.xml object 1: <bndbox><ymin> is 'x'; expected a number" in problems
    assert "Annotations/swapped.xml object 1: xmax 10 < xmin 20" in problems
    assert "Annotations/bad_flag.xml object 1: <difficult> is 'yes'; expected 0 or 1" in problems
    assert (
        "Annotations/no_image.xml: image not found (looked for JPEGImages/gone.jpg or "
        "JPEGImages/no_image.*)" in problems
    )
    # a <filename> leading outside the images is refused, even when the file is there; the
    # image of the XML's own name (escape_ok.jpg) is used instead, as for any wrong <filename>
    assert (
        "Annotations/escape.xml: <filename> '../../secret.jpg' points outside JPEGImages/ "
        "('..' and absolute paths elsewhere are refused), and there is no JPEGImages/escape.*"
        in problems
    )
    assert not any("escape_ok" in p for p in problems)
    assert (
        "Annotations/same_image.xml: image JPEGImages/ok.jpg is also the image of "
        "Annotations/ok.xml" in problems
    )


def test_a_voc_folder_of_unreadable_xml_files_says_how_many_and_writes_nothing(tmp_path, capsys):
    """Every XML file malformed (a tool's interrupted export): the error counted problems only,
    not how many of the files have them (a file may have several); it says both, lists the
    first ten reasons, exits 1 and writes no file."""
    src = make_voc(
        tmp_path / "voc", {f"{i:02d}": ((16, 16), "<annotation><object>") for i in range(12)}
    )
    out = tmp_path / "out.json"
    assert main(["convert", "--from", "voc", str(src), str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot convert the VOC annotations (errors in 12 of 12 XML files): 12 problems" in err
    assert "Annotations/00.xml: malformed XML" in err and "... and 2 more" in err
    assert "Traceback" not in err and not out.exists()


def test_a_file_left_out_under_skip_bad_is_not_counted_among_the_files_with_errors(tmp_path):
    """Under ``skip_bad`` (``on_bad_label: skip``) a malformed XML file is left out, its
    problem moved to ``dropped``; the error about the split list's missing id still said
    "errors in 1 of 2 XML files", naming the file that was dropped, not at fault."""
    from visionkit.data.convert.voc import voc_to_coco

    src = make_voc(
        tmp_path / "voc",
        {"a": ((32, 32), voc_xml([voc_object("cat", (2, 2, 20, 20))])), "m": ((16, 16), "<a>")},
    )
    (src / "ImageSets" / "Main").mkdir(parents=True)
    (src / "ImageSets" / "Main" / "train.txt").write_text("a\nm\nghost\n")
    with pytest.raises(AnnotationError) as info:
        voc_to_coco(src, split="train", skip_bad=True)
    assert "cannot convert the VOC annotations: 1 problem:" in str(info.value)
    assert info.value.problems == [
        "ImageSets/Main/train.txt: id 'ghost': Annotations/ghost.xml is missing"
    ]
    with pytest.raises(AnnotationError, match=r"\(errors in 1 of 2 XML files\): 2 problems"):
        voc_to_coco(src, split="train")  # the malformed file's problem stays: it counts
    problems: list[str] = []
    conversion = voc_to_coco(src, split="train", problems=problems, skip_bad=True)
    assert problems == info.value.problems  # the reader's report: the split list's only
    assert [p[:32] for p in sum(conversion.dropped, [])] == ["Annotations/m.xml: malformed XML"]


def test_convert_counts_images_without_objects_as_check_data_does(tmp_path, capsys):
    """An image whose only object is ``<difficult>1`` (written as a crowd) was one "with
    annotations" in ``convert``'s summary, while ``check-data`` lists it among the images
    without boxes: both say it has no objects."""
    src = make_voc(
        tmp_path / "voc",
        {
            "a": ((32, 32), voc_xml([voc_object("cat", (2, 2, 20, 20))])),
            "d": ((32, 32), voc_xml([voc_object("cat", (2, 2, 20, 20), difficult=1)])),
        },
    )
    summary = convert(src, tmp_path / "out.json", "voc").summary()
    assert summary.splitlines()[0] == (
        "converted voc -> coco: 2 images (1 without objects), 2 annotations (1 difficult, "
        "written as iscrowd 1)"
    )
    code, out, _ = run_cli(["check-data", "--format", "voc", "--root", str(src)], capsys)
    assert "images without boxes: 1" in out


# ---------------------------------------------------------------------------------- YOLO


def test_yolo_boxes_polygons_and_negatives(tmp_path):
    src = make_yolo(
        tmp_path / "yolo",
        {"a.png": (64, 32), "b.png": (48, 48), "c.jpg": (40, 40)},
        {
            "a.txt": "0 0.5 0.5 0.25 0.5\n\n1 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n"
            "0 1.0004 0.5 0 0.5\n",  # tiny overshoot clipped; zero width: skipped
            "c.txt": "",
        },
        classes_txt="cat\ndog\n",
    )
    coco, skipped, *_ = to_coco(src, "yolo")
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [
        ("images/a.png", 64, 32),
        ("images/b.png", 48, 48),
        ("images/c.jpg", 40, 40),
    ]
    box, polygon = coco["annotations"]
    assert box["bbox"] == [24, 8, 16, 16] and box["area"] == 256 and box["category_id"] == 1
    assert "segmentation" not in box and box["iscrowd"] == 0
    assert polygon["category_id"] == 2 and polygon["bbox"] == [16, 8, 32, 16]
    assert polygon["segmentation"] == [[16, 8, 48, 8, 48, 24, 16, 24]] and polygon["area"] == 512
    assert skipped == ["labels/a.txt line 4: box of zero area"]
    assert anns_of(coco, 2) == [] and anns_of(coco, 3) == []  # no label file, empty label file


def test_yolo_names_from_data_yaml_list_or_dict_and_split_folders(tmp_path):
    images = {"train/a.png": (32, 32), "val/b.png": (32, 32)}
    labels = {"train/a.txt": "1 0.5 0.5 0.5 0.5\n", "val/b.txt": "0 0.5 0.5 0.5 0.5\n"}
    src = make_yolo(tmp_path / "list", images, labels, data_yaml="nc: 2\nnames: [car, bus]\n")
    coco, *_ = to_coco(src, "yolo", split="train")
    assert [i["file_name"] for i in coco["images"]] == ["images/train/a.png"]
    assert [c["name"] for c in coco["categories"]] == ["car", "bus"]
    assert coco["annotations"][0]["category_id"] == 2

    src = make_yolo(tmp_path / "dict", images, labels, data_yaml="names:\n  0: car\n  1: bus\n")
    coco, *_ = to_coco(src, "yolo", split="val")
    assert [c["name"] for c in coco["categories"]] == ["car", "bus"]
    assert [i["file_name"] for i in coco["images"]] == ["images/val/b.png"]

    (src / "classes.txt").write_text("car\nbus\n")  # agrees: fine
    assert to_coco(src, "yolo", split="val").coco["categories"][1]["name"] == "bus"
    (src / "classes.txt").write_text("bus\ncar\n")
    with pytest.raises(DataError, match="classes.txt and data.yaml list different classes"):
        to_coco(src, "yolo", split="val")

    (src / "classes.txt").unlink()
    (src / "data.yaml").write_text("names:\n  0: car\n  2: bus\n")
    with pytest.raises(DataError, match=r"indices 0..1 without gaps; got \[0, 2\]"):
        to_coco(src, "yolo", split="val")
    (src / "data.yaml").write_text("nc: 3\nnames: [car, bus]\n")
    with pytest.raises(DataError, match="nc is 3 but 'names' lists 2 classes"):
        to_coco(src, "yolo", split="val")
    (src / "data.yaml").unlink()
    with pytest.raises(DataError, match="no class names; write classes.txt"):
        to_coco(src, "yolo", split="val")


def test_yolo_problems_are_reported_together(tmp_path):
    src = make_yolo(
        tmp_path / "yolo",
        {"a.png": (32, 32), "b.png": (32, 32)},
        {
            "a.txt": "0 0.5 0.5 0.2\n"  # 1: four fields
            "3 0.5 0.5 0.2 0.2\n"  # 2: class out of range
            "x 0.5 0.5 0.2 0.2\n"  # 3: class not an integer
            "0 0.5 0.5 0.2 1.2\n"  # 4: a box value outside [0, 1]
            "1 0.1 0.1 0.5 0.1 0.5 0.5 0.1\n"  # 5: odd polygon
            "1 0.3 0.3 0.5 0.5\n"  # 6: a box, fine
            "1 0.1 0.1 0.5 0.1 1.5 0.5\n"  # 7: polygon point outside
            "0 0.5 nan 0.2 0.2\n"  # 8: not finite
            "0 0.5 0.5 0.2 0.2 0.9\n"  # 9: a box with a confidence column
            "1.0 0.5 0.5 0.2 0.2\n",  # 10: an integral float class (read as 1, as Ultralytics)
            "b.txt": "0 0.5 0.5 0.2 0.2 0.3 0.3\n",  # collinear triangle: skipped, no error
            "orphan.txt": "0 0.5 0.5 0.2 0.2\n",
            "classes.txt": "not a label file\n",  # LabelImg's names file inside labels/
        },
        classes_txt="cat\ndog\n",
    )
    with pytest.raises(AnnotationError) as info:
        to_coco(src, "yolo")
    assert "cannot convert the YOLO labels (errors in 2 of 3 files): 9 problems" in str(info.value)
    assert info.value.problems == [
        "labels/orphan.txt: no image for this label file (images/orphan.*)",
        "labels/a.txt line 1: 4 fields; expected 5 (class cx cy w h) or a polygon "
        "(class x1 y1 x2 y2 x3 y3 ...)",
        "labels/a.txt line 2: class index 3 out of range 0..1 (2 classes)",
        "labels/a.txt line 3: class index 'x' is not an integer",
        "labels/a.txt line 4: coordinates outside [0, 1] (normalised): h 1.2",
        "labels/a.txt line 5: 8 fields: neither a box (class cx cy w h) nor a polygon (class "
        "x1 y1 x2 y2 x3 y3 ...: x y pairs)",
        "labels/a.txt line 7: coordinates outside [0, 1] (normalised): 1.5",
        "labels/a.txt line 8: 'nan' is not a finite number",
        "labels/a.txt line 9: 6 fields: neither a box (class cx cy w h) nor a polygon (class "
        "x1 y1 x2 y2 x3 y3 ...: x y pairs) (a box with a confidence column? drop it)",
    ]


def test_yolo_unreadable_image_is_reported(tmp_path):
    src = make_yolo(
        tmp_path / "yolo", {"a.png": (32, 32)}, {"a.txt": "0 0.5 0.5 0.2 0.2\n"}, classes_txt="a\n"
    )
    (src / "images" / "._a.png").write_bytes(b"macOS metadata: ignored, as hidden files are")
    (src / "labels" / "._a.txt").write_bytes(b"\x00\x05")
    assert [i["file_name"] for i in to_coco(src, "yolo").coco["images"]] == ["images/a.png"]
    (src / "images" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(AnnotationError, match="images/broken.jpg: not an image in a supported"):
        to_coco(src, "yolo")


# ---------------------------------------------------------------------------------- writing


def small_yolo(root: Path) -> Path:
    return make_yolo(
        root,
        {"a.png": (64, 64), "b.png": (64, 64), "c.png": (64, 64)},
        {
            "a.txt": "0 0.5 0.5 0.5 0.5\n1 0.2 0.2 0.6 0.2 0.6 0.6 0.2 0.6\n",
            "b.txt": "1 0.25 0.75 0.25 0.25\n",
        },
        classes_txt="cat\ndog\n",
    )


def test_the_source_is_never_modified_and_existing_files_are_refused(tmp_path):
    src = small_yolo(tmp_path / "yolo")
    before = tree_hashes(src)
    report = convert(src, src / "train.json", "yolo")  # a new file inside SRC is allowed
    assert report.output == (src / "train.json").resolve()
    written = tree_hashes(src)
    assert written.pop("train.json") and written == before
    with_output = tree_hashes(src)

    with pytest.raises(DataError, match="refusing to overwrite .*inside the source folder"):
        convert(src, src / "train.json", "yolo", overwrite=True)
    with pytest.raises(DataError, match="must be a .json file"):
        convert(src, src / "labels" / "a.txt", "yolo")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        convert(src, tmp_path / "out", "yolo")
    names = tmp_path / "names.json"
    names.write_text("cat\ndog\n")  # a one-per-line names file that happens to end in .json
    with pytest.raises(DataError, match="it is the class names file"):
        convert(src, names, "yolo", classes=names, overwrite=True)
    assert names.read_text() == "cat\ndog\n"

    out = tmp_path / "out" / "all.json"
    out.write_text("{}")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        convert(src, out, "yolo")
    assert out.read_text() == "{}"
    convert(src, out, "yolo", overwrite=True)
    assert len(json.loads(out.read_text())["images"]) == 3
    assert tree_hashes(src) == with_output
    assert not list(tmp_path.rglob(".*.tmp*"))  # no temporary file of write_atomic left


def test_converted_files_load_with_the_coco_reader(tmp_path):
    src = small_yolo(tmp_path / "yolo")
    out = tmp_path / "yolo.json"
    convert(src, out, "yolo")
    ds = CocoDataset(src, annotations=out)
    assert ds.label_names["instances"] == ["cat", "dog"] and ds.category_ids == [1, 2]
    sample = ds[0]
    np.testing.assert_allclose(
        sample["boxes"], [[16, 16, 48, 48], [12.8, 12.8, 38.4, 38.4]], atol=1e-4
    )
    assert sample["labels"].tolist() == [0, 1]
    assert ds[2]["boxes"].shape == (0, 4)  # the negative

    polygons = make_yolo(
        tmp_path / "polygons",
        {"p.png": (40, 20)},
        {"p.txt": "0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n"},
        classes_txt="cat\n",
    )
    convert(polygons, tmp_path / "polygons.json", "yolo")
    mask = CocoDataset(polygons, annotations=tmp_path / "polygons.json", masks=True)[0]["masks"]
    assert mask.shape == (1, 20, 40)
    assert mask[0, 5:15, 10:30].all() and mask[0].sum() == 200  # the 20 x 10 rectangle

    objects = [voc_object("dog", (3, 4, 12, 20)), voc_object("dog", (20, 5, 30, 9), difficult=1)]
    voc = make_voc(tmp_path / "voc", {"1": ((40, 30), voc_xml(objects))})
    convert(voc, tmp_path / "voc.json", "voc")
    ds = CocoDataset(voc, annotations=tmp_path / "voc.json")
    sample = ds[0]
    assert sample["boxes"].tolist() == [[2, 3, 12, 20]]  # the difficult one is not a target
    assert sample["image"].shape == (30, 40, 3)


def test_cli_convert_prints_a_summary_and_reports_errors(tmp_path, capsys):
    src = small_yolo(tmp_path / "yolo")
    out = tmp_path / "coco" / "train.json"
    assert main(["convert", "--from", "yolo", "--to", "coco", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "converted yolo -> coco: 3 images (1 without objects), 3 annotations" in printed
    assert "  cat: 1\n  dog: 2\nskipped: 0" in printed
    assert f"wrote {out.resolve()}" in printed
    assert json.loads(out.read_text())["info"]["generator"] == "visionkit convert"

    (src / "labels" / "c.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    assert main(["convert", "--from", "yolo", str(src), str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err
    assert "labels/c.txt line 1: class index 5 out of range 0..1 (2 classes)" in err
    assert not (tmp_path / "x.json").exists()

    xml = voc_xml([voc_object("cat", (1, 1, 8, 8), difficult=1)])
    voc = make_voc(tmp_path / "voc", {"1": ((32, 32), xml)})
    assert main(["convert", "--from", "voc", str(voc), str(tmp_path / "voc.json")]) == 0
    assert "1 annotation (1 difficult, written as iscrowd 1)" in capsys.readouterr().out


def test_a_detector_trains_on_a_converted_yolo_folder(tmp_path):
    from visionkit.engine.runner import train

    src = small_yolo(tmp_path / "yolo")
    out = tmp_path / "train.json"
    convert(src, out, "yolo")
    data = {"format": "coco", "images": str(src), "annotations": str(out)}
    config = {
        "name": "yolo_det",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"det": {"name": "fcos", "num_classes": None, "num_convs": 1}},
        },
        "data": {"train": data, "val": data, "image_size": 64, "batch_size": 2, "num_workers": 0},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 2,
            "limit_val_batches": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }
    run_dir, metrics = train(config)
    assert "det/mAP" in metrics
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.reliability
def test_a_file_name_that_is_not_utf8_is_a_clear_error_naming_it(tmp_path, capsys):
    """Issue 18, item 11: such a name cannot go into a json file; the converter said so with a
    UnicodeEncodeError traceback."""
    src = tmp_path / "yolo"
    (src / "labels").mkdir(parents=True)
    (src / "classes.txt").write_text("thing\n")
    for stem in (b"ok", b"caf\xe9"):
        name = src / "images" / (stem.decode("utf-8", "surrogateescape") + ".png")
        name.parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(name, format="PNG")
        (name.parent.parent / "labels" / (name.stem + ".txt")).write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(AnnotationError, match="not valid UTF-8; rename the file"):
        to_coco(src, "yolo")
    code = main(["convert", "--from", "yolo", "--to", "coco", str(src), str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 1 and "images/caf\\xe9.png: the file name is not valid UTF-8" in err
    assert "Traceback" not in err and not (tmp_path / "o.json").exists()


def test_voc_as_published_with_annotations_and_images_folders(tmp_path, capsys):
    """Issue 16: many VOC-XML sets (e.g. the raccoon photos) ship `annotations/` + `images/`;
    the converter refused them until the folders were renamed."""
    root = make_voc(
        tmp_path / "raccoon",
        {"r1": ((40, 30), voc_xml([voc_object("raccoon", (2, 3, 20, 25))], "r1.jpg"))},
    )
    (root / "Annotations").rename(root / "annotations")
    (root / "JPEGImages").rename(root / "images")
    coco, *_ = to_coco(root, "voc")
    assert [i["file_name"] for i in coco["images"]] == ["images/r1.jpg"]
    assert coco["annotations"][0]["bbox"] == [1, 2, 19, 23]
    code = main(["convert", "--from", "voc", "--to", "coco", str(root), str(tmp_path / "r.json")])
    assert code == 0 and (tmp_path / "r.json").is_file()
    (root / "images").rename(root / "photos")
    with pytest.raises(DataError, match=r"no image folder \(JPEGImages/, images/, Images/ not"):
        to_coco(root, "voc")
    assert voc_folders(root, images="photos") == (root / "annotations", root / "photos")


def test_yolo_box_reaching_past_an_edge_is_clipped_as_ultralytics_reads_it(tmp_path, capsys):
    src = make_yolo(
        tmp_path / "yolo",
        {"a.png": (100, 50), "b.png": (100, 50)},
        {
            "a.txt": "0 0.95 0.5 0.2 0.2\n"  # x 0.85..1.05: 5 px past the right edge
            "0 0.9995 0.5 0.001 0.2\n",  # past it by 0.005 px: clipped without a word
            "b.txt": "0 50 25 10 10\n",  # pixel coordinates: an error that says so
        },
        classes_txt="cat\n",
    )
    with pytest.raises(AnnotationError) as info:
        to_coco(src, "yolo")
    assert info.value.problems == [
        "labels/b.txt line 1: coordinates outside [0, 1] (normalised): cx 50, cy 25, w 10, h 10 "
        "(pixel coordinates? divide x and w by the image width, y and h by its height)"
    ]
    (src / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    conversion = to_coco(src, "yolo")
    assert [a["bbox"] for a in conversion.coco["annotations"][:2]] == [
        [85.0, 20.0, 15.0, 10.0],
        [99.9, 20.0, 0.1, 10.0],
    ]
    assert conversion.clipped == [
        "labels/a.txt line 1: box cx 0.95 cy 0.5 w 0.2 h 0.2 reaches outside the 100x50 image; "
        "clipped to it"
    ]
    assert main(["convert", "--from", "yolo", str(src), str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "clipped to the image: 1\n  labels/a.txt line 1: box cx 0.95" in out


def test_yolo_lines_with_commas_say_how_a_line_is_written(tmp_path):
    src = make_yolo(
        tmp_path / "yolo",
        {"a.png": (32, 32), "b.png": (32, 32)},
        {"a.txt": "0,0.5,0.5,0.2,0.2\n", "b.txt": "0 0,5 0,5 0,2 0,2\n"},  # CSV; decimal commas
        classes_txt="cat\n",
    )
    with pytest.raises(AnnotationError) as info:
        to_coco(src, "yolo")
    assert info.value.problems == [
        "labels/a.txt line 1: '0,0.5,0.5,0.2,0.2': has commas; fields are separated by spaces "
        "and decimals written with a point (0 0.5 0.5 0.2 0.2)",
        "labels/b.txt line 1: '0 0,5 0,5 0,2 0,2': has commas; fields are separated by spaces "
        "and decimals written with a point (0 0.5 0.5 0.2 0.2)",
    ]


@pytest.mark.reliability
def test_duplicate_yolo_lines_are_removed_with_a_warning_naming_the_file(tmp_path, caplog):
    # a repeated line was kept silently: two boxes on one object; Ultralytics removes it
    # ("N duplicate labels removed"), and so do the reader and convert now
    line = "0 0.5 0.5 0.2 0.2\n"
    text = line + line + "0 0.50 0.5 0.20 0.2\n0 0.3 0.3 0.1 0.1\n"
    root = make_yolo(tmp_path / "yolo", {"a.jpg": (64, 32)}, {"a.txt": text}, classes_txt="cat\n")
    warning = (
        "duplicate labels removed: labels/a.txt: 2 duplicate labels removed (lines 2, 3: the "
        "same as an earlier line), as Ultralytics removes them"
    )
    report = convert(root, tmp_path / "a.json", "yolo")
    assert report.per_class == {"cat": 2} and warning in report.summary()
    from visionkit.build.data import build_dataset

    with caplog.at_level("WARNING"):
        ds = build_dataset({"format": "yolo", "root": str(root)}, split="train", needs=["boxes"])
    assert len(ds[0]["boxes"]) == 2
    assert [f"{p.kind}: {p}" for p in ds.report.warnings] == [warning]
    assert "labels/a.txt: 2 duplicate labels removed" in caplog.text
