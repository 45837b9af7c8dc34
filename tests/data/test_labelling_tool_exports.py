"""Phone photos labelled with labelImg / CVAT / Label Studio, as those tools save them: XML
files beside their images or in sub-folders, file names with spaces, an XML namespace,
iPhone HEIC photos, ``difficult`` objects."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.test_convert import make_yolo, voc_object, voc_xml
from visionkit.build.data import build_dataset
from visionkit.cli import main
from visionkit.data.batch import list_files
from visionkit.data.io import read_image
from visionkit.errors import ImageDecodeError


def photo(path: Path, size=(64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (40, 80, 120)).save(path)


def heic(path: Path) -> None:
    """The first bytes of an iPhone photo: an ISO base media ``ftyp`` box of brand heic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">I", 24) + b"ftypheic" + bytes(4) + b"mif1heic" + bytes(64))


def voc(spec: dict, split: str | None = None):
    return build_dataset({"format": "voc", "split": split, **spec}, split="train", needs=["boxes"])


def test_split_lists_of_file_names_with_spaces_are_read_as_whole_names(tmp_path, capsys):
    """``visionkit split`` wrote ``café photo 7`` into val.txt and the reader read the id
    ``café`` (the first word, as for VOC's ``000005 -1`` class lists): 'café.xml is missing'."""
    root = tmp_path / "voc"
    for stem in ("café photo 7", "IMG_0001 2", "IMG_0002", "IMG_0003"):
        photo(root / "JPEGImages" / f"{stem}.jpg")
        xml = voc_xml([voc_object("cat", (11, 11, 30, 30))], f"{stem}.jpg", (64, 48))
        (root / "Annotations" / f"{stem}.xml").parent.mkdir(exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(xml, encoding="utf-8")
    assert main(["split", str(root), "--val", "0.5"]) == 0
    capsys.readouterr()
    lists = {
        s: (root / f"ImageSets/Main/{s}.txt").read_text().split("\n") for s in ("train", "val")
    }
    names = sorted(n for lines in lists.values() for n in lines if n)
    assert names == ["IMG_0001 2", "IMG_0002", "IMG_0003", "café photo 7"]
    files = sorted(
        Path(voc({"root": str(root)}, s)[i]["path"]).name
        for s in ("train", "val")
        for i in range(2)
    )
    assert files == ["IMG_0001 2.jpg", "IMG_0002.jpg", "IMG_0003.jpg", "café photo 7.jpg"]
    # a VOC class list's "<id> <flag>" lines still read as the id
    (root / "ImageSets/Main/cat_train.txt").write_text("IMG_0002  1\nIMG_0003 -1\n")
    ds = voc({"root": str(root)}, "cat_train")
    assert [Path(ds[i]["path"]).name for i in range(2)] == ["IMG_0002.jpg", "IMG_0003.jpg"]


def test_xml_files_in_sub_folders_are_read_and_split(tmp_path, capsys):
    """CVAT writes Annotations/<folder>/<name>.xml for images in folders (and labelImg users
    keep one folder per outing): "Annotations holds no .xml files"."""
    root = tmp_path / "voc"
    for stem in ("trip 1/a", "trip 1/b", "trip2/a"):
        photo(root / "JPEGImages" / f"{stem}.JPG")
        xml = voc_xml([voc_object("dog", (11, 11, 30, 30))], "a.jpg", (64, 48))  # no folder
        (root / "Annotations" / f"{stem}.xml").parent.mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
    ds = voc({"root": str(root)})
    paths = [Path(ds[i]["path"]).relative_to(root).as_posix() for i in range(len(ds))]
    assert paths == ["JPEGImages/trip 1/a.JPG", "JPEGImages/trip 1/b.JPG", "JPEGImages/trip2/a.JPG"]
    assert ds[1]["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]
    assert main(["split", str(root), "--val", "0.34"]) == 0
    listed = sorted(
        line
        for s in ("train", "val")
        for line in (root / f"ImageSets/Main/{s}.txt").read_text().splitlines()
    )
    assert listed == ["trip 1/a", "trip 1/b", "trip2/a"]
    assert len(voc({"root": str(root)}, "train")) + len(voc({"root": str(root)}, "val")) == 3


def test_xml_files_beside_their_images_are_read_as_labelimg_saves_them(tmp_path, capsys):
    """labelImg saves a.xml beside a.jpg (Roboflow's VOC export too, in train/, valid/): the
    reader wanted Annotations/ + JPEGImages/ and the recipe stopped there."""
    root = tmp_path / "photos"
    photo(root / "IMG_0001.JPG", (80, 60))
    (root / "IMG_0001.xml").write_text(
        voc_xml([voc_object("cat", (11, 21, 40.5, 45))], "IMG_0001.jpg", (80, 60))
    )
    photo(root / "IMG_0002.jpg")
    (root / "IMG_0002.xml").write_text(voc_xml([], "IMG_0002.jpg", (64, 48)))
    ds = voc({"root": str(root)})
    assert len(ds) == 2 and ds.label_names == {"instances": ["cat"]}
    np.testing.assert_allclose(ds[0]["boxes"], [[10, 20, 40.5, 45]])
    assert ds[1]["boxes"].shape == (0, 4)
    assert main(["check-data", "--format", "voc", "--root", str(root)]) == 0
    assert "no problems found" in capsys.readouterr().out
    assert main(["split", str(root), "--val", "0.5"]) == 0
    assert len(voc({"root": str(root)}, "val")) == 1


def test_an_xml_namespace_is_read_as_plain_voc(tmp_path):
    """An exporter's xmlns="..." on <annotation>: "root element is
    <{http://...}annotation>; expected <annotation>"."""
    root = tmp_path / "voc"
    photo(root / "JPEGImages" / "a.jpg")
    xml = voc_xml([voc_object("cat", (11, 11, 30, 30), difficult=0)], "a.jpg", (64, 48))
    xml = xml.replace("<annotation>", '<annotation xmlns="http://www.example.org/voc">')
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_bytes(b"\xef\xbb\xbf" + xml.encode())  # a BOM too
    ds = voc({"root": str(root)})
    assert ds.label_names == {"instances": ["cat"]}
    assert ds[0]["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]


def test_heic_photos_are_named_with_what_to_do(tmp_path, caplog):
    """An iPhone's HEIC photos were left out of every folder listing without a word; the
    YOLO label file of one said "no image for this label file (images/IMG_9.*)" beside
    images/IMG_9.HEIC; reading one said only "not an image in a supported format"."""
    root = make_yolo(
        tmp_path / "ls",  # Label Studio's YOLO export: images/, labels/, classes.txt
        {"IMG_1.jpg": (64, 48)},
        {"IMG_1.txt": "0 0.5 0.5 0.2 0.2\n", "IMG_9.txt": "1 0.5 0.5 0.2 0.2\n"},
        classes_txt="Dog\nCat\n",
    )
    heic(root / "images" / "IMG_9.HEIC")
    heic(root / "images" / "IMG_8.heic")
    with caplog.at_level(logging.WARNING):
        assert list_files(root / "images") == [root / "images" / "IMG_1.jpg"]
    assert "left out 2 HEIC / HEIF photos (IMG_8.heic, ...)" in caplog.text
    assert "convert them to JPEG" in caplog.text
    with pytest.raises(ImageDecodeError, match="Pillow cannot decode HEIC / HEIF photos"):
        read_image(root / "images" / "IMG_9.HEIC")
    ds = build_dataset(
        {"format": "yolo", "root": str(root), "on_bad_label": "skip"},
        split="train",
        needs=["boxes"],
    )
    (problem,) = [p for p in ds.report.warnings if p.kind == "bad annotation file"]
    assert problem.where == "labels/IMG_9.txt"
    assert problem.detail.startswith("its image images/IMG_9.HEIC cannot be read: Pillow")


def test_difficult_objects_are_named_as_such_without_the_cvat_brush_hint(tmp_path, caplog):
    """A VOC set whose <difficult>1 objects were half of its objects was warned of as "crowd
    regions" with the fix for CVAT's brush masks in a COCO file (crowds: objects)."""
    root = tmp_path / "voc"
    photo(root / "JPEGImages" / "a.jpg")
    objects = [voc_object("cat", (11, 11, 30, 30)), voc_object("cat", (31, 5, 60, 40), 1)]
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(voc_xml(objects, "a.jpg", (64, 48)))
    with caplog.at_level(logging.WARNING):
        ds = voc({"root": str(root)})
    assert (
        "1 difficult object (<difficult>1, read as iscrowd: 1): not boxes to learn"
        in (ds.report.notes)[0]
    )
    assert "CVAT" not in caplog.text and "crowds: objects" not in " ".join(ds.report.notes)


def test_boxes_of_a_sideways_phone_photo_say_how_to_read_it_as_labelled(tmp_path, capsys):
    """labelImg shows a phone photo as stored (EXIF orientation not applied) and writes its
    stored size: the size mismatch now says what to do, not only that it is wrong."""
    root = tmp_path / "photos"
    root.mkdir()
    stored = Image.new("RGB", (80, 60), (40, 80, 120))
    exif = stored.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: upright 60 x 80
    stored.save(root / "IMG_0001.jpg", exif=exif)
    (root / "IMG_0001.xml").write_text(
        voc_xml([voc_object("cat", (11, 11, 30, 30))], "IMG_0001.jpg", (80, 60))
    )
    assert main(["check-data", "--format", "voc", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "size mismatch: IMG_0001.jpg (image id 1): the annotation file says 60x80" in out
    assert "if the boxes were drawn on it unturned, as labelImg shows it, remove that tag" in out
    assert "exiftool -Orientation= FILE" in out


def test_a_stale_filename_never_gives_an_xml_file_another_image(tmp_path):
    """Photos and XML files renamed together (or an XML file copied as a template) keep the
    old <filename>: IMG_0005.xml, whose <filename> says IMG_0003.jpg, labelled IMG_0003.jpg
    without a word; torchvision, mmdetection and Detectron2 pair the files by name."""
    root = tmp_path / "voc"
    photo(root / "JPEGImages" / "IMG_0003.jpg", (64, 48))
    photo(root / "JPEGImages" / "IMG_0005.jpg", (80, 60))
    (root / "Annotations").mkdir()
    xml = voc_xml([voc_object("cat", (11, 11, 30, 30))], "IMG_0003.jpg", (80, 60))
    (root / "Annotations" / "IMG_0005.xml").write_text(xml)
    ds = voc({"root": str(root)})
    assert len(ds) == 1 and Path(ds[0]["path"]).name == "IMG_0005.jpg"
    assert ds[0]["orig_size"] == (60, 80)
    (warning,) = [p for p in ds.report.warnings if p.kind == "image by its name"]
    assert warning.where == "Annotations/IMG_0005.xml"
    assert "<filename> 'IMG_0003.jpg' names another image; read JPEGImages/IMG_0005.jpg" in (
        warning.detail
    )
    # a <filename> of another extension, or naming an image that is not there: as before
    (root / "Annotations" / "IMG_0005.xml").write_text(xml.replace("IMG_0003.jpg", "x.png"))
    ds = voc({"root": str(root)})
    assert Path(ds[0]["path"]).name == "IMG_0005.jpg" and not ds.report.warnings


def test_xml_files_with_an_upper_case_suffix_are_read_and_split(tmp_path, capsys):
    """``b.XML`` (Windows tools, renamed files) was listed, then opened as ``b.xml``: a raw
    FileNotFoundError from the reader, and ``split`` wrote an id the reader said was missing."""
    root = tmp_path / "voc"
    for name in ("a.xml", "b.XML"):
        stem = name.split(".")[0]
        photo(root / "JPEGImages" / f"{stem}.jpg")
        xml = voc_xml([voc_object("cat", (11, 11, 30, 30))], f"{stem}.jpg", (64, 48))
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / name).write_text(xml)
    ds = voc({"root": str(root)})
    assert [Path(ds[i]["path"]).name for i in range(len(ds))] == ["a.jpg", "b.jpg"]
    assert main(["split", str(root), "--val", "0.5"]) == 0
    capsys.readouterr()
    read = sorted(Path(voc({"root": str(root)}, s)[0]["path"]).name for s in ("train", "val"))
    assert read == ["a.jpg", "b.jpg"]


def test_a_missing_id_of_a_line_with_a_space_names_the_line(tmp_path):
    """``photo 1`` read as VOC's ``<id> <flag>`` when no XML has that name: the error named
    only ``photo.xml``, a file the user never listed."""
    root = tmp_path / "voc"
    photo(root / "JPEGImages" / "a.jpg")
    (root / "Annotations").mkdir()
    xml = voc_xml([voc_object("cat", (11, 11, 30, 30))], "a.jpg", (64, 48))
    (root / "Annotations" / "a.xml").write_text(xml)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nphoto 1\n")
    with pytest.raises(Exception, match=r"id 'photo' \(line 'photo 1'\): Annotations/photo.xml"):
        voc({"root": str(root)}, "train")


def test_cvat_for_images_xml_is_named_with_the_export_to_choose(tmp_path):
    root = tmp_path / "cvat"
    photo(root / "images" / "a.jpg")
    (root / "annotations.xml").write_text(
        '<annotations><version>1.1</version><image id="0" name="a.jpg" width="64" height="48">'
        '<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9"/></image></annotations>'
    )
    with pytest.raises(Exception, match="root element is <annotations>.*'Pascal VOC 1.1'"):
        voc({"root": str(root)})
