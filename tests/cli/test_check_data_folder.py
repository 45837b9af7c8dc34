"""``visionkit check-data`` and ``visionkit split`` on class folders (``format: folder``) as a
user runs them: the evaluation splits read with the training set's classes, as training
reads them; validation images that are training images too; a root given one level too low;
split lists of unreadable or vanished images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import run
from visionkit.data.readers.folder import ImageFolderDataset
from visionkit.errors import DataError


def photos(folder: Path, n: int, first: int = 0) -> Path:
    """``n`` small noisy JPEGs ``<i>.jpg`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + n):
        pixels = np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return folder


def pets(root: Path, classes: dict[str, int]) -> Path:
    for name, n in classes.items():
        photos(root / name, n)
    return root


def config(path: Path) -> Path:
    """A tiny classifier config whose data.train / data.val are class folders set by
    overrides (as configs/custom/classify_r18.yaml's)."""
    spec = {
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"cls": {"name": "linear", "num_classes": None}},
        },
        "data": {
            "train": {"format": "folder", "root": None},
            "val": {"format": "folder", "root": None},
            "image_size": 32,
        },
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def check(capsys, tmp_path, train, val, *pairs, flags=()):
    argv = ["check-data", "--config", config(tmp_path / "c.yaml"), *flags]
    return run([*argv, f"data.train.root={train}", f"data.val.root={val}", *pairs], capsys)


def truncated_jpeg(path: Path) -> None:
    """A JPEG whose header reads (training's check) but whose pixels end early (check-data
    decodes them): an error of check-data's own."""
    pixels = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])


@pytest.mark.parametrize("case", ["split val", "training set with an error"])
def test_the_validation_folder_is_read_with_the_training_classes(tmp_path, capsys, case):
    """As training reads data.val (the training folders' classes): a class folder the
    training set lacks is an error naming it, an empty one is no problem, also when
    check-data did not build the training set (--split val) or found errors in it."""
    train = pets(tmp_path / "train", {"cat": 3, "dog": 3, "zebra": 3})
    val = pets(tmp_path / "val", {"cat": 2, "dog": 2, "horse": 2})
    (val / "zebra").mkdir()  # a validation folder may lack a class
    if case == "split val":
        more = ["--split", "val"]
    else:
        more = []
        truncated_jpeg(train / "cat" / "9.jpg")
    code, out, _ = check(capsys, tmp_path, train, val, flags=more)
    assert code == 1
    assert (
        f"data.val: {val}: class folders not in the class list ['cat', 'dog', 'zebra'] "
        "(class_names, or for a validation or test set the training set's class folders)"
    ) in out
    assert "so each of their images would count as an error" in out and "\n  horse" in out
    assert "class folders without images" not in out
    for photo in (val / "horse").iterdir():
        photo.unlink()
    (val / "horse").rmdir()
    code, out, _ = check(capsys, tmp_path, train, val, flags=more)
    assert "images per class (class): cat 2, dog 2, zebra 0" in out
    assert "class without images: " in out and "no images in the class folders zebra/" in out
    assert "class folders without images" not in out
    assert code == (0 if case == "split val" else 1)  # 1: the truncated training photo
    if case != "split val":
        assert "data.val: folder dataset" in out and out.count("unreadable image") == 1


def test_validation_images_that_are_training_images_too_are_warned_of(tmp_path, capsys):
    """Training's warning, from check-data too; a split folder read whole for training
    (data.train without split) is told to read its train split."""
    root = pets(tmp_path / "pets", {"cat": 4, "dog": 4})
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("cat/0.jpg\ncat/1.jpg\ncat/2.jpg\ndog/0.jpg\n")
    (root / "splits" / "val.txt").write_text("cat/3.jpg\ndog/3.jpg\n")
    code, out, _ = check(capsys, tmp_path, root, root, "data.val.split=val", flags=["--strict"])
    assert code == 1  # a warning, under --strict
    assert (
        f"warning: data.val: 2 of its 2 images are training images too (e.g. {root / 'cat'}"
    ) in out
    assert (
        f"data.train has no split: it reads every image of {root}, those of data.val "
        "(split: val) too; set data.train.split=train"
    ) in out
    assert "1 problem (0 errors, 1 warning) in 2 datasets" in out
    code, out, _ = check(
        capsys, tmp_path, root, root, "data.val.split=val", "data.train.split=train"
    )
    assert code == 0 and "warning" not in out
    code, out, _ = check(capsys, tmp_path, root, root)  # the same entry: said from the config
    assert (
        code == 0
        and f"warning: data.val reads the same images as data.train (folder {root})" in out
    )


def test_a_single_class_folder_given_as_the_root_is_refused_naming_its_parent(tmp_path, capsys):
    """Images directly in the root, and none (or fewer) in sub-folders: one class's folder,
    an error saying so and which folder to give (was: "no images found" for 6 images, or a
    pass with one class, nested/, and its images left out)."""
    train = pets(tmp_path / "train", {"unicode bird": 6, "cat": 5})
    photos(train / "cat" / "nested", 2, first=10)
    seen = {
        "unicode bird": "(6 images directly in it, e.g. 0.jpg, no class sub-folders)",
        "cat": "(5 images directly in it, e.g. 0.jpg, 2 images in its sub-folder nested/)",
    }
    for folder, counts in seen.items():
        code, out, _ = run(["check-data", "--format", "folder", "--root", train / folder], capsys)
        assert code == 1
        assert f"{train / folder}: looks like a single class folder {counts}; expected " in out
        assert f"give its parent folder, {train}, as the root" in out
    photos(train / "cat" / "more", 4)  # fewer directly in it than in class folders: a warning
    ds = ImageFolderDataset(train / "cat")
    assert len(ds) == 6 and ds.report.warnings[0].kind == "image in no sub-folder"
    # many loose images beside two or more class folders (a review): left out, a warning,
    # not "a single class folder"
    photos(train / "cat", 20, first=100)
    ds = ImageFolderDataset(train / "cat")
    assert len(ds) == 6 and ds.report.warnings[0].kind == "image in no sub-folder"


def test_macos_zip_leftovers_are_no_class(tmp_path):
    root = pets(tmp_path / "pets", {"cat": 2, "dog": 2})
    (root / "__MACOSX" / "cat").mkdir(parents=True)
    (root / "__MACOSX" / "cat" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07")
    assert ImageFolderDataset(root).label_names == {"class": ["cat", "dog"]}


def test_split_names_class_folder_images_it_cannot_read(tmp_path, capsys):
    """Listed all the same (the reader names them when it reads them), with a warning naming
    each; a list naming images that are gone says how to write the lists anew."""
    root = pets(tmp_path / "pets", {"cat": 5, "dog": 5})
    (root / "cat" / "zero.jpg").write_bytes(b"")
    cut = (root / "dog" / "0.jpg").read_bytes()[:20]
    (root / "dog" / "0.jpg").write_bytes(cut)
    code, out, err = run(["split", root, "--val", "0.2"], capsys)
    assert code == 0, err
    assert "warning: 2 images cannot be read (image header checked), listed all the same: " in out
    assert "cat/zero.jpg (empty file (0 bytes)); dog/0.jpg (" in out
    assert f"then visionkit split {root} --overwrite writes the lists anew" in out
    listed = (root / "splits" / "train.txt").read_text() + (root / "splits" / "val.txt").read_text()
    assert "cat/zero.jpg" in listed
    (root / "cat" / "zero.jpg").unlink()
    split = "train" if "cat/zero.jpg" in (root / "splits" / "train.txt").read_text() else "val"
    with pytest.raises(DataError) as info:
        ImageFolderDataset(root, split=split)
    assert str(info.value).startswith(
        f"{root / 'splits' / f'{split}.txt'} names images that are not in a class folder of "
        f"{root} (expected each line's <class>/<image> there; if they were removed or moved, "
        f"visionkit split {root} --overwrite writes the lists anew):"
    )
    assert info.value.problems == ["cat/zero.jpg"]


def test_split_help_names_class_folders(capsys):
    with pytest.raises(SystemExit):
        run(["split", "--help"], capsys)
    out = capsys.readouterr().out
    assert "the folder of class folders (<class>/<image>)" in " ".join(out.split())


def test_a_misspelt_format_suggests_the_closest_name_first(tmp_path, capsys):
    for name in ("image_folder", "ImageFolder", "fodler"):
        code, _, err = run(["check-data", "--format", name, "--root", tmp_path], capsys)
        assert code == 2 and "did you mean 'folder', 'mask_folder'?" in err
    code, _, err = run(["check-data", "--format", "Mask-Folder", "--root", tmp_path], capsys)
    assert "did you mean 'mask_folder', 'folder'?" in err


def test_training_on_imbalanced_class_folders_warns_with_each_classs_count(tmp_path, capsys):
    """Training said nothing of the classes' sizes (check-data alone counted them): a set
    with 12 cats and one dog trained without a word of it."""
    train = pets(tmp_path / "train", {"cat": 12, "dog": 1, "fox": 2})
    val = pets(tmp_path / "val", {"cat": 1, "dog": 1})
    argv = ["train", "--config", config(tmp_path / "c.yaml"), "--output-dir", tmp_path / "run"]
    steps = ["trainer.max_steps=1", "data.batch_size=2", "data.num_workers=0"]
    code, _, err = run([*argv, f"data.train.root={train}", f"data.val.root={val}", *steps], capsys)
    assert code == 0, err[-2000:]
    assert (
        "data.train: imbalanced classes: cat has 12 images, dog 1 (12x fewer); images per "
        "class: cat 12, fox 2, dog 1; the model sees the small classes rarely" in err
    )
    for i in range(3, 12):  # 3 cats, 2 foxes, 1 dog: no warning
        (train / "cat" / f"{i}.jpg").unlink()
    overrides = [f"data.train.root={train}", f"data.val.root={val}", *steps, "--exist-ok"]
    code, _, err = run([*argv, *overrides], capsys)
    assert code == 0 and "imbalanced classes" not in err


def test_a_class_left_out_is_told_apart_from_an_empty_folder(tmp_path):
    """Before: a class whose folder holds images that the split's list leaves out (or that
    ``on_bad_image: skip`` dropped) was said to be "empty or missing"."""
    root = pets(tmp_path / "pets", {"cat": 2, "dog": 3, "fox": 1})
    (root / "emu").mkdir()
    (root / "fox" / "0.jpg").write_bytes(b"not a jpeg")
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("cat/0.jpg\nfox/0.jpg\n")
    names = ["cat", "dog", "emu", "fox", "gnu"]
    dataset = ImageFolderDataset(root, class_names=names, split="val", on_bad_image="skip")
    text = dataset.report.render()
    assert (
        "no images in the class folders dog/ (3 images in it, none listed in splits/val.txt), "
        "emu/ (empty), fox/ (its 1 image unreadable, left out: on_bad_image: skip), "
        "gnu/ (missing): in a validation"
    ) in text
