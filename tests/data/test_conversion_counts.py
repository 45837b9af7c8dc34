"""Session 39, what ``visionkit convert`` and the VOC / YOLO / LabelMe readers count:

* LabelMe files holding only ``__ignore__`` shapes became images without objects with no word
  (``check-data``: "no problems found"); now a warning counts them and names them.
* "errors in N of M files" was said of VOC folders only; YOLO and LabelMe say it too, and
  ``check-data`` of all three (a note beside the errors).
* convert's summary lists skipped boxes, clipped boxes and other warnings apart; it now says
  how many warnings ``check-data`` counts of them, and the numbers agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.data.test_convert import make_voc, make_yolo, voc_object, voc_xml
from visionkit.data.convert.to_coco import convert
from visionkit.data.readers.labelme import LabelmeDataset
from visionkit.data.readers.voc import VocDataset, YoloDataset
from visionkit.errors import AnnotationError

TRIANGLE = [[1, 1], [20, 1], [20, 20]]


def labelme_file(folder: Path, stem: str, shapes: list, image_path: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (10, 20, 30)).save(folder / f"{stem}.jpg")
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {"label": label, "points": points, "shape_type": kind, "group_id": None, "flags": {}}
            for label, points, kind in shapes
        ],
        "imagePath": image_path or f"{stem}.jpg",
        "imageData": None,
        "imageHeight": 48,
        "imageWidth": 64,
    }
    (folder / f"{stem}.json").write_text(json.dumps(doc))


IGNORED = [("__ignore__", TRIANGLE, "polygon")]


def test_files_of_only_ignore_regions_are_counted_when_no_file_names_a_class(tmp_path):
    src = tmp_path / "photos"
    for stem in ("a", "b", "c"):
        labelme_file(src, stem, IGNORED)
    report = convert(src, tmp_path / "out.json", "labelme")
    summary = report.summary()
    assert (
        f"only ignore regions: {src}: 3 json files held only __ignore__ regions, no object: "
        "a.json, b.json, c.json; read as images without objects, their regions written nowhere"
    ) in summary
    [warning] = [p for p in LabelmeDataset(src).report.warnings]
    assert warning.kind == "only ignore regions" and "3 json files" in warning.detail


def test_beside_files_with_objects_they_are_counted_as_crowds_of_every_class(tmp_path):
    src = tmp_path / "photos"
    labelme_file(src, "a", [("cat", TRIANGLE, "polygon")])
    labelme_file(src, "b", IGNORED)
    labelme_file(src, "c", [*IGNORED, ("dog", TRIANGLE, "polygon")])  # an object: not counted
    summary = convert(src, tmp_path / "out.json", "labelme").summary()
    assert "1 json file held only __ignore__ regions, no object: b.json" in summary
    assert "each region written as a crowd annotation of every class" in summary


def test_yolo_and_labelme_errors_say_in_how_many_files_as_voc(tmp_path):
    yolo = make_yolo(
        tmp_path / "yolo",
        {f"{i}.jpg": (64, 48) for i in range(5)},
        {f"{i}.txt": ("5 0.5 0.5 0.2 0.2\n" if i < 2 else "0 0.5 0.5 0.2 0.2\n") for i in range(5)},
        classes_txt="cat\n",
    )
    with pytest.raises(AnnotationError, match=r"YOLO labels \(errors in 2 of 5 files\): 2 prob"):
        convert(yolo, tmp_path / "yolo.json", "yolo")
    with pytest.raises(AnnotationError) as read:  # check-data prints its report
        YoloDataset(yolo)
    assert "annotation files: errors in 2 of 5 files" in read.value.report.render()

    src = tmp_path / "photos"
    for stem in ("a", "b", "c", "d"):
        labelme_file(src, stem, [("cat", TRIANGLE if stem != "b" else "abc", "polygon")])
    (src / "d.json").write_text("{not json")
    with pytest.raises(AnnotationError, match=r"LabelMe files \(errors in 2 of 4 json files\)"):
        convert(src, tmp_path / "labelme.json", "labelme")
    with pytest.raises(AnnotationError) as read:
        LabelmeDataset(src)
    assert "annotation files: errors in 2 of 4 json files" in read.value.report.render()


def test_convert_counts_the_warnings_check_data_lists(tmp_path):
    src = make_voc(
        tmp_path / "voc",
        {
            "a": ((64, 48), voc_xml([voc_object("cat", (5, 5, 20, 20))], "b.jpg")),  # b's
            "b": ((64, 48), voc_xml([voc_object("cat", (5, 5, 80, 20))], "b.jpg")),  # clipped
            "c": ((64, 48), voc_xml([voc_object("cat", (90, 90, 99, 99))], "c.jpg")),  # out
        },
    )
    summary = convert(src, tmp_path / "out.json", "voc").summary()
    warnings = VocDataset(src).report.warnings
    assert sorted(p.kind for p in warnings) == ["box clipped", "box dropped", "image by its name"]
    assert (
        "check-data counts these as 3 warnings (box dropped 1, box clipped 1, other 1)"
    ) in summary
