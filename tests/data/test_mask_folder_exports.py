"""Semantic label folders as tools and datasets publish them, read in a user's first hour:
Roboflow's "Semantic Segmentation Masks" export (images beside their ``_mask.png`` label files,
``_classes.csv``), label files with upper-case extensions, Cityscapes read with neither suffix
set, and ADE20K's labels numbered from 1 with 0 = "other" (``reduce_zero_label``). Each test
makes its own data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.data.test_mask_folder_formats import CITYSCAPES, write_cityscapes
from tests.data.test_masks import write_void_folder
from tests.helpers import run
from visionkit.build.data import build_dataset
from visionkit.data.batch import IGNORE_PIXEL
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.errors import AnnotationError, ConfigError, DataError

pytestmark = pytest.mark.reliability


def write_roboflow(
    folder, n: int = 3, classes: str = "Pixel Value, Class\n0, background\n1, cat\n"
):
    """Roboflow's layout: ``<name>_jpg.rf.<hash>.jpg`` beside ``..._mask.png`` (class
    indices), and ``_classes.csv``, all in one split folder."""
    folder.mkdir(parents=True)
    for i in range(n):
        image = np.random.default_rng(i).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        mask = np.zeros((24, 32), np.uint8)
        mask[4:12, 4 + i : 20 + i] = 1
        Image.fromarray(image).save(folder / f"img{i}_jpg.rf.ab{i}.jpg")
        Image.fromarray(mask).save(folder / f"img{i}_jpg.rf.ab{i}_mask.png")
    (folder / "_classes.csv").write_text(classes)
    return folder


def test_a_roboflow_export_with_images_beside_their_masks_is_read(tmp_path, capsys):
    """The label files in the images' folder were read as images too (each told it had no
    ``_mask_mask.png``), and ``_classes.csv`` was no class list ("no class names")."""
    root = tmp_path / "rf"
    write_roboflow(root / "train")
    dataset = MaskFolderDataset(root, images="train", masks="train", mask_suffix="_mask")
    assert [p.name for p in dataset.paths] == [f"img{i}_jpg.rf.ab{i}.jpg" for i in range(3)]
    assert dataset.label_names == {"semantic": ["background", "cat"]}
    assert dataset.class_source == str(root / "train" / "_classes.csv")
    assert dataset[1]["semantic"][4, 5] == 1 and dataset[1]["semantic"][0, 0] == 0
    assert "3 label files in the images' folder" in " ".join(dataset.report.notes)
    # the export's folder as root, or its parent, without the settings: what to set
    for given, fix in (
        (root / "train", "images: ., masks: ."),
        (root, "images: train, masks: train"),
    ):
        with pytest.raises(DataError) as info:
            MaskFolderDataset(given)
        assert (
            f"{root / 'train'} holds the images and their label files together (img0_jpg.rf.ab0"
            f".jpg, img0_jpg.rf.ab0_mask.png): read them with {fix}, mask_suffix: _mask"
        ) in str(info.value)
    code, out, _ = run(
        ["check-data", "--format", "mask_folder", "--root", root / "train"]
        + ["images=.", "masks=.", "mask_suffix=_mask"],
        capsys,
    )
    assert code == 0 and "images: 3" in out and "no problems found" in out


def test_a_classes_csv_whose_values_are_not_0_to_c_is_an_error_naming_it(tmp_path):
    root = write_roboflow(tmp_path / "rf", classes="Pixel Value, Class\n0, background\n2, cat\n")
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root, images=".", masks=".", mask_suffix="_mask")
    assert str(info.value).startswith(
        f"{root / '_classes.csv'}: expected rows '<pixel value>, <class name>' whose values are "
        "each of 0..1 once (Roboflow's _classes.csv), got 0, background; 2, cat"
    )
    (root / "classes.txt").write_text("background\ncat\n")  # classes.txt comes first
    assert MaskFolderDataset(root, images=".", masks=".", mask_suffix="_mask").label_names == {
        "semantic": ["background", "cat"]
    }


def test_label_files_with_upper_case_extensions_are_found(tmp_path):
    """``IMG_1.JPG`` beside ``IMG_1.PNG`` labels: 'no label PNG for IMG_1.JPG (masks/IMG_1.PNG
    is there: set  in the dataset's entry)', a hint naming no setting."""
    root = write_void_folder(tmp_path / "caps", void=255)
    for png in sorted((root / "masks").glob("*.png")):
        png.rename(png.with_suffix(".PNG"))
    dataset = MaskFolderDataset(root)
    assert [p.name for p in dataset.mask_paths] == ["0.PNG", "1.PNG", "2.PNG", "3.PNG"]
    assert set(np.unique(dataset[0]["semantic"])) == {0, 1, 2, IGNORE_PIXEL}
    # a mixed case is not read: the hint says so (it said "set  in the dataset's entry")
    (root / "masks" / "0.PNG").rename(root / "masks" / "0.Png")
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root)
    assert (
        "no label PNG for 0.png (masks/0.Png is there: only the case of its extension differs; "
        "rename it 0.png (or 0.PNG))"
    ) in str(info.value)


def test_cityscapes_read_without_either_suffix_names_both(tmp_path):
    """With neither image_suffix nor mask_suffix set, the missing label file had no hint."""
    root = write_cityscapes(tmp_path / "cs")
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root, images="leftImg8bit", masks="gtFine")
    assert (
        "(gtFine/aachen/aachen_000000_000000_gtFine_labelTrainIds.png is there: the image names "
        "carry a suffix the label files lack; set image_suffix: _leftImg8bit, mask_suffix: "
        "_gtFine_labelTrainIds in the dataset's entry)"
    ) in str(info.value)
    assert len(MaskFolderDataset(root, **CITYSCAPES)) == 2
    # a label missing for good is not pointed to the next frame's label
    (root / "gtFine" / "aachen" / "aachen_000000_000000_gtFine_labelTrainIds.png").unlink()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(
        root / "gtFine" / "aachen" / "aachen_000000_000007.png"
    )
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root, images="leftImg8bit", masks="gtFine")
    assert "aachen_000000_000007" not in str(info.value)


def write_ade(root, n: int = 2):
    """ADE20K's convention: classes.txt names classes 1..3 of the files, 0 is 'other'."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("wall\nbuilding\nsky\n")
    for i in range(n):
        mask = np.zeros((16, 16), np.uint8)  # 0: other
        mask[:8, 4:] = 1
        mask[8:, 4:] = 2
        mask[12:, 12:] = 3
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def test_reduce_zero_label_reads_ade20k_labels_numbered_from_one(tmp_path, capsys):
    """ADE20K's 1..150 with 0 = 'other' had no setting: the error told to ignore 150, the
    top class, as a void value."""
    root = write_ade(tmp_path / "ade")
    with pytest.raises(AnnotationError) as info:
        MaskFolderDataset(root)[0]
    assert (
        "label values [3] are not classes 0..2 nor the ignore index 255; if 3 marks void"
    ) in str(info.value)
    assert (
        "; if the label files number the classes 1..3 and 0 marks pixels of no class (ADE20K's "
        "'other'), set reduce_zero_label: true in both entries"
    ) in str(info.value)
    semantic = MaskFolderDataset(root, reduce_zero_label=True)[0]["semantic"]
    assert semantic[0, 0] == IGNORE_PIXEL and semantic[0, 4] == 0 and semantic[8, 4] == 1
    assert semantic[15, 15] == 2 and semantic.dtype == np.uint8
    code, out, _ = run(
        ["check-data", "--format", "mask_folder", "--root", root, "reduce_zero_label=true"], capsys
    )
    assert code == 0 and "unlabelled (ignore_index 255 and 0, reduce_zero_label) 25.0%" in out
    # a value above the classes is still an error, numbered as the files number them
    Image.fromarray(np.full((16, 16), 4, np.uint8)).save(root / "masks" / "1.png")
    with pytest.raises(AnnotationError, match=r"label values \[4\] are not classes 1\.\.3 \("):
        MaskFolderDataset(root, reduce_zero_label=True)[1]
    # the ignore_index that is a class names the class by its file value
    with pytest.raises(DataError, match="ignore_index 3 is class 2 'sky' of"):
        run_build(root, ignore_index=3)
    with pytest.raises(ConfigError, match="reduce_zero_label: only for label images of class"):
        MaskFolderDataset(root, reduce_zero_label=True, palette="p.txt")


def run_build(root, **entry):
    return build_dataset(
        {"format": "mask_folder", "root": str(root), "reduce_zero_label": True, **entry}
    )


def test_split_of_images_beside_their_masks_lists_the_images_only(tmp_path, capsys):
    """``visionkit split`` listed the ``_mask.png`` files as images of the split, and the
    reader then said the listed label files were not among its images."""
    root = write_roboflow(tmp_path / "rf", n=4)
    code, out, _ = run(["split", root, "--val", "0.5", "--images", ".", "--masks", "."], capsys)
    assert code == 0 and "mask_suffix: _mask" in out
    listed = sorted((root / "splits" / "train.txt").read_text().split()) + sorted(
        (root / "splits" / "val.txt").read_text().split()
    )
    assert len(listed) == 4 and not [n for n in listed if "_mask" in n]
    entry = {"images": ".", "masks": ".", "mask_suffix": "_mask"}
    assert len(MaskFolderDataset(root, split="train", **entry)) == 2
    assert len(MaskFolderDataset(root, split="val", **entry)) == 2


def test_black_and_white_masks_are_an_error_not_a_class_never_learnt(tmp_path, capsys):
    """Masks saved 0 / 255 (255 = object) with ``background`` and ``defect`` in classes.txt:
    check-data said 'no problems found' and training ignored every defect pixel (mIoU of
    background only)."""
    root = tmp_path / "defects"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ndefect\n")
    for i in range(3):
        mask = np.zeros((16, 16), np.uint8)
        mask[4:8, 4:12] = 255
        Image.fromarray(np.full((16, 16, 3), 9 * i, np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    expected = (
        "only 0 and 255: masks/: no label file holds a class other than 0 ('background'): all "
        "other labelled pixels (12.5%) are 255, which is unlabelled (ignore_index 255, VOC's "
        "object borders), so 'defect' would never be learnt. Label images hold class indices"
    )
    code, out, _ = run(["check-data", "--format", "mask_folder", "--root", root], capsys)
    assert code == 1 and expected in out
    with pytest.raises(DataError, match="so 'defect' would never be learnt"):
        build_dataset({"format": "mask_folder", "root": str(root)})  # 3 of 3 maps decoded
    # VOC's 255 borders around objects of class 1 are no such thing
    for i in range(3):
        mask = np.array(Image.open(root / "masks" / f"{i}.png"))
        mask[5:7, 5:11] = 1
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    assert len(MaskFolderDataset(root)) == 3


def write_strips(root, n: int, positives=()):
    """``n`` label maps with a 255 "don't care" strip, class 1 in those of ``positives``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ncrack\n")
    for i in range(n):
        mask = np.zeros((16, 16), np.uint8)
        mask[:, :2] = 255
        mask[5:9, 5:9] = 1 if i in positives else 0
        Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(root / "images" / f"{i:03d}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    return root


def test_black_and_white_check_of_a_sample_warns_and_spares_validation_sets(tmp_path, capsys):
    """Training decoded 8 label maps and, finding 0 and 255 only, refused a set whose 38th file
    holds class 1 (check-data: no problems), and refused a validation set of negative images
    with 255 regions as one whose classes 'would never be learnt'."""
    root = write_strips(tmp_path / "cracks", 40, positives=(37,))
    entry = {"format": "mask_folder", "root": str(root)}
    train = build_dataset(entry)  # 32 maps decoded, none of class 1: a warning
    (warning,) = train.report.warnings
    assert warning.detail.startswith(
        "in 32 sampled label files none holds a class other than 0 ('background'): all other "
        "labelled pixels (12.5%) are 255, which is unlabelled (ignore_index 255, VOC's object "
        "borders); if 255 marks objects (masks saved black and white), their pixels are read "
        "as unlabelled and ignored."
    )
    assert warning.detail.endswith("(visionkit check-data decodes every label file)")
    assert len(train) == 40 and "never be learnt" not in warning.detail
    code, out, _ = run(["check-data", "--format", "mask_folder", "--root", root], capsys)
    assert code == 0 and "no problems found" in out
    # negatives only, every map decoded: refused for training, a warning for validation
    negatives = write_strips(tmp_path / "negatives", 40)
    entry = {"format": "mask_folder", "root": str(negatives)}
    with pytest.raises(DataError, match="so 'crack' would never be learnt"):
        build_dataset(entry, image_check="decode")
    for check in ("header", "decode"):
        val = build_dataset(entry, split="val", image_check=check)
        (warning,) = val.report.warnings
        assert len(val) == 40 and "never be learnt" not in warning.detail
    assert warning.detail.startswith("no label file holds a class other than 0")


def test_split_lists_no_label_file_as_an_image_of_either_naming_or_extension_case(
    tmp_path, capsys, caplog
):
    """Label files named two ways as often (``x0_color.png``, ``x0_label.png``): the second
    naming's files were listed as images; a label of a mixed-case extension (``x3_mask.Png``)
    was listed as an image too."""
    two = tmp_path / "two"
    two.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).save(two / f"x{i}.jpg")
        for suffix in ("_color", "_label"):
            Image.fromarray(np.ones((8, 8), np.uint8)).save(two / f"x{i}{suffix}.png")
    code, out, _ = run(["split", two, "--val", "0.5", "--images", ".", "--masks", "."], capsys)
    listed = [(two / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val")]
    assert code == 0 and sorted(listed[0] + listed[1]) == [f"x{i}.jpg" for i in range(4)]
    assert "named two ways (x0_color.png, x0_label.png)" in caplog.text
    case = tmp_path / "case"
    case.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).save(case / f"x{i}.jpg")
        ext = ".Png" if i == 3 else ".png"
        Image.fromarray(np.ones((8, 8), np.uint8)).save(case / f"x{i}_mask{ext}", format="PNG")
    code, out, _ = run(["split", case, "--val", "0.5", "--images", ".", "--masks", "."], capsys)
    listed = [(case / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val")]
    assert code == 0 and sorted(listed[0] + listed[1]) == [f"x{i}.jpg" for i in range(4)]


def test_split_of_png_images_beside_their_masks_keeps_images_named_like_another(tmp_path, capsys):
    """``a_2.png`` and ``b-night.png`` were taken for labels of ``a.png`` and ``b.png`` and
    listed in no split, and, the images being PNGs, the printed entry lacked ``mask_suffix:
    _mask`` (it read each image as its own label)."""
    root = tmp_path / "same"
    root.mkdir()
    (root / "classes.txt").write_text("background\nobject\n")
    for stem in ("a", "a_2", "b", "b-night"):
        Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).save(root / f"{stem}.png")
        Image.fromarray(np.ones((8, 8), np.uint8)).save(root / f"{stem}_mask.png")
    code, out, _ = run(["split", root, "--val", "0.5", "--images", ".", "--masks", "."], capsys)
    assert code == 0 and "images: ., masks: ., mask_suffix: _mask, split: train" in out
    listed = [(root / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val")]
    assert sorted(listed[0] + listed[1]) == ["a.png", "a_2.png", "b-night.png", "b.png"]
    entry = {"images": ".", "masks": ".", "mask_suffix": "_mask"}
    assert len(MaskFolderDataset(root, split="val", **entry)) == 2
    # the folder given as a root without images/ and masks/: the settings that read it
    with pytest.raises(DataError, match="read them with images: ., masks: ., mask_suffix: _mask"):
        MaskFolderDataset(root)
