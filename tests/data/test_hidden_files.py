"""Hidden files are never images (issue 18, item 11): macOS ``._photo.jpg`` companions,
``.DS_Store`` and hidden folders are left out of every folder listing; so are system folders
(Synology's ``@eaDir``, ``$RECYCLE.BIN``, ...) in any case, in predict's globs and in the
exported ``standalone.py`` too."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import write_image
from visionkit.data.batch import SYSTEM_FOLDERS, list_files
from visionkit.data.readers.folder import ImageFolderDataset
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.data.readers.voc_segmentation import write_mask_png
from visionkit.errors import DataError
from visionkit.export import standalone
from visionkit.inference.predict import expand_inputs

pytestmark = pytest.mark.reliability


def junk(path):
    """What macOS leaves beside a photo on a FAT/exFAT drive: not an image at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    return path


def test_list_files_skips_hidden_files_and_folders(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "sub" / "c.PNG")
    junk(tmp_path / "._a.jpg")
    junk(tmp_path / ".DS_Store")
    write_image(tmp_path / ".ipynb_checkpoints" / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    assert list_files(tmp_path) == [tmp_path / "a.jpg", tmp_path / "sub" / "c.PNG"]
    assert list_files(tmp_path, (".txt",)) == [tmp_path / "notes.txt"]


def test_an_image_folder_with_macos_companions_reads_only_the_photos(tmp_path):
    for cls in ("cat", "dog"):
        write_image(tmp_path / cls / "1.jpg")
        junk(tmp_path / cls / "._1.jpg")
    junk(tmp_path / ".DS_Store")
    dataset = ImageFolderDataset(tmp_path)
    assert len(dataset) == 2 and dataset.label_names["class"] == ["cat", "dog"]
    assert dataset.report.problems == []


def test_a_mask_folder_with_hidden_files_reads_only_the_pairs(tmp_path):
    write_image(tmp_path / "images" / "1.png")
    write_mask_png(tmp_path / "masks" / "1.png", np.zeros((32, 32), np.uint8))
    junk(tmp_path / "images" / "._1.png")
    (tmp_path / "classes.txt").write_text("background\nthing\n")
    dataset = MaskFolderDataset(tmp_path)
    assert [p.name for p in dataset.paths] == ["1.png"]


def test_predict_inputs_leave_hidden_files_out(tmp_path):
    write_image(tmp_path / "in" / "x.jpg")
    junk(tmp_path / "in" / "._x.jpg")
    assert expand_inputs([tmp_path / "in"]) == [tmp_path / "in" / "x.jpg"]


def test_macos_companions_in_the_root_are_not_images_in_no_sub_folder(tmp_path):
    for identity in ("bello", "felix"):
        write_image(tmp_path / identity / "1.jpg")
    junk(tmp_path / "._IMG_0.JPG")  # what a Finder copy leaves beside the folders
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.report.problems == []


def test_a_class_folder_beside_its_companion_files_is_read_not_refused(tmp_path):
    write_image(tmp_path / "cats" / "1.jpg")
    junk(tmp_path / "._a.jpg")
    junk(tmp_path / "._b.jpg")
    assert len(ImageFolderDataset(tmp_path)) == 1


def test_synology_and_other_system_folders_are_neither_classes_nor_images(tmp_path):
    # a Synology share's @eaDir/ (a thumbnail JPEG per photo) was the class "@eaDir", and the
    # thumbnails inside each class folder its images; predict read them too
    for cls in ("cat", "dog"):
        write_image(tmp_path / cls / "1.jpg")
        write_image(tmp_path / cls / "@eaDir" / "1.jpg" / "SYNOPHOTO_THUMB_M.jpg")
        write_image(tmp_path / cls / "#recycle" / "old.jpg")
    write_image(tmp_path / "@eaDir" / "cat" / "SYNOFILE_THUMB_M.jpg")
    junk(tmp_path / "__MACOSX" / "cat" / "._1.jpg")
    write_image(tmp_path / ".ipynb_checkpoints" / "1.jpg")
    junk(tmp_path / ".DS_Store")
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.label_names["class"] == ["cat", "dog"] and len(dataset) == 2
    assert dataset.report.problems == []
    photos = [tmp_path / "cat" / "1.jpg", tmp_path / "dog" / "1.jpg"]
    assert list_files(tmp_path) == photos
    assert expand_inputs([tmp_path]) == photos


def test_a_mask_folder_on_a_synology_share_reads_only_the_pairs(tmp_path):
    write_image(tmp_path / "images" / "1.png")
    write_image(tmp_path / "images" / "@eaDir" / "1.png" / "SYNOPHOTO_THUMB_M.png")
    write_mask_png(tmp_path / "masks" / "1.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "classes.txt").write_text("background\nthing\n")
    dataset = MaskFolderDataset(tmp_path)
    assert [p.name for p in dataset.paths] == ["1.png"]


def test_system_folders_in_any_case_are_skipped_and_look_alikes_are_classes(tmp_path):
    # Windows writes $Recycle.Bin, which was the class "$Recycle.Bin"; recycle/ and eaDir/ are
    # names a user may give a class
    for cls in ("recycle", "eaDir"):
        write_image(tmp_path / cls / "1.jpg")
    write_image(tmp_path / "$Recycle.Bin" / "S-1-5-21" / "$R0.jpg")
    write_image(tmp_path / "system volume information" / "x.jpg")
    write_image(tmp_path / "recycle" / "@EADIR" / "1.jpg" / "SYNOPHOTO_THUMB_M.jpg")
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.label_names["class"] == ["eaDir", "recycle"] and len(dataset) == 2


def test_a_predict_glob_skips_system_folders_unless_it_names_them(tmp_path):
    # photos/**/*.jpg read cat/@eaDir/1.jpg/SYNOPHOTO_THUMB_M.jpg as a photo
    write_image(tmp_path / "cat" / "1.jpg")
    write_image(tmp_path / "cat" / "@eaDir" / "1.jpg" / "SYNOPHOTO_THUMB_M.jpg")
    write_image(tmp_path / "cat" / "#recycle" / "old.jpg")
    assert expand_inputs([f"{tmp_path}/**/*.jpg"]) == [tmp_path / "cat" / "1.jpg"]
    thumb = tmp_path / "cat" / "@eaDir" / "1.jpg" / "SYNOPHOTO_THUMB_M.jpg"
    assert expand_inputs([f"{tmp_path}/*/@eaDir/*/*.jpg"]) == [thumb]
    with pytest.raises(DataError, match=r"\(hidden/system files, e.g. .*#recycle"):
        expand_inputs([f"{tmp_path}/*/*/old.jpg"])  # only the recycle bin's file


def test_the_standalone_program_skips_the_same_folders(tmp_path):
    # standalone.py imports nothing of visionkit: its copy of the names must not drift
    assert standalone.SYSTEM_FOLDERS == SYSTEM_FOLDERS
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_M.jpg")
    write_image(tmp_path / "$Recycle.Bin" / "b.jpg")
    write_image(tmp_path / ".thumbnails" / "c.jpg")
    junk(tmp_path / "._a.jpg")
    write_image(tmp_path / "recycle" / "d.jpg")
    assert standalone.image_files([str(tmp_path)]) == [
        str(tmp_path / "a.jpg"),
        str(tmp_path / "recycle" / "d.jpg"),
    ]


def test_the_datasets_page_lists_exactly_the_skipped_folders():
    text = (Path(__file__).parents[2] / "docs" / "datasets.md").read_text(encoding="utf-8")
    listed = text.split("one sub-folder per class (", 1)[1].split(" ignored", 1)[0]
    assert set(re.findall(r"`([^`]+)/`", listed)) == SYSTEM_FOLDERS
