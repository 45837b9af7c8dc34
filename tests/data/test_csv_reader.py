"""``format: csv``: a CSV of (image, label) rows as Kaggle and most classification sets publish
them (``id,label`` with ids without an extension, ``filename,class``, no header, ``;``, a BOM,
Windows line ends), its bad rows named by line, missing images counted, ``check-data``,
``visionkit split`` and a short training run through the config path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import run
from visionkit.data.readers.csv_labels import CsvDataset
from visionkit.errors import ConfigError, DataError


def photos(folder: Path, names: list[str]) -> Path:
    """Small noisy images of the given file names in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pixels = np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return folder


def kaggle(root: Path, n: int = 6) -> Path:
    """Kaggle's layout: ``train.csv`` (``id;label``, ids without an extension, integer labels,
    a BOM, ``\\r\\n``, ``;``) beside ``train_images/<id>.jpg``."""
    photos(root / "train_images", [f"img{i}.jpg" for i in range(n)])
    rows = "".join(f"img{i};{i % 3}\r\n" for i in range(n))
    (root / "train.csv").write_text("\ufeffid;label\r\n" + rows, encoding="utf-8")
    return root / "train.csv"


def test_kaggle_ids_without_extension_bom_crlf_semicolons(tmp_path):
    csv = kaggle(tmp_path)
    ds = CsvDataset(str(csv), images=str(tmp_path / "train_images"))
    assert ds.label_names == {"class": ["0", "1", "2"]}  # 0..N-1: their own indices
    assert len(ds) == 6 and [ds[i]["class"] for i in range(6)] == [0, 1, 2, 0, 1, 2]
    sample = ds[1]
    assert sample["path"].endswith("img1.jpg") and sample["image"].shape == (24, 24, 3)
    assert sample["image_id"] == 2
    text = ds.report.render()
    assert "a header row: sniffed" in text and "';'-delimited" in text
    assert "image cells without an extension: found as .jpg (6)" in text
    # the default image folder is the CSV's: the error says where the images are
    with pytest.raises(DataError) as err:
        CsvDataset(str(csv))
    message = str(err.value)
    assert "missing file: img0 (line 2)" in message and "6 problems" in message
    assert f"give images: {tmp_path / 'train_images'}" in message


def test_names_headers_and_columns(tmp_path):
    photos(tmp_path, ["a.png", "b.png", "c.png", "d.png"])
    (tmp_path / "labels.csv").write_text(
        "filename,class,fold\na.png,dog,0\nb.png,cat,1\nc.png,dog,0\nd.png,cat,1\n"
    )
    ds = CsvDataset(str(tmp_path / "labels.csv"))
    assert ds.label_names["class"] == ["cat", "dog"] and [c for _, c in ds.items] == [1, 0, 1, 0]
    by_name = CsvDataset(str(tmp_path / "labels.csv"), image_column="filename", label_column=2)
    assert by_name.label_names["class"] == ["0", "1"]
    # no header: the first row names an image, so it is one
    (tmp_path / "plain.csv").write_text("b.png\tcat\na.png\tdog\n")
    plain = CsvDataset(str(tmp_path / "plain.csv"))
    assert len(plain) == 2 and "no header row: sniffed" in plain.report.render()
    assert len(CsvDataset(str(tmp_path / "plain.csv"), header=False)) == 2
    with pytest.raises(ConfigError, match="label_column: 'kind' names a column, but .* without a"):
        CsvDataset(str(tmp_path / "plain.csv"), header=False, label_column="kind")
    with pytest.raises(ConfigError, match=r"no column 'label' in the header .*filename, class"):
        CsvDataset(str(tmp_path / "labels.csv"), label_column="label")
    # the training set's class order; an integer label is an index into it
    (tmp_path / "val.csv").write_text("image,label\na.png,1\nb.png,dog\n")
    val = CsvDataset(str(tmp_path / "val.csv"), class_names=["cat", "dog"])
    assert [c for _, c in val.items] == [1, 1]
    assert f"class without images: {tmp_path / 'val.csv'}" in val.report.render()
    assert "no rows of the classes cat" in val.report.render()


def test_bad_rows_are_named_by_line_or_skipped(tmp_path, caplog):
    photos(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    (tmp_path / "train.csv").write_text(
        "image,label\na.jpg,cat\nb.jpg\nc.jpg,\nd.jpg,dog\na.jpg,cat\nd.jpg,cat\n../x.jpg,cat\n"
    )
    with pytest.raises(DataError) as err:
        CsvDataset(str(tmp_path / "train.csv"))
    message = str(err.value)
    assert "bad row: train.csv, line 3: 1 column (b.jpg), expected at least 2" in message
    assert "bad row: train.csv, line 4: empty label (c.jpg, )" in message
    assert "bad row: train.csv, line 7: d.jpg has label 'cat', line 5 'dog'" in message
    assert "bad row: train.csv, line 8: '../x.jpg' resolves outside" in message
    assert "line 6" not in message  # a repeated row is a warning
    with caplog.at_level(logging.WARNING):
        ds = CsvDataset(str(tmp_path / "train.csv"), on_bad_label="skip")
    assert [p.name for p, _ in ds.items] == ["a.jpg"]  # d.jpg: two labels, both left out
    text = ds.report.render()
    assert "duplicate row: train.csv, line 6: a.jpg,cat repeats line 2: left out" in text
    assert "warnings (training goes on): 5" in text
    assert "4 x bad row" in caplog.text


def test_missing_images_are_refused_or_counted_and_skipped(tmp_path, caplog):
    photos(tmp_path, ["a.jpg", "c.jpg"])
    (tmp_path / "train.csv").write_text("a.jpg,0\nb.jpg,1\nc.jpg,1\nd,0\n")
    with pytest.raises(DataError) as err:
        CsvDataset(str(tmp_path / "train.csv"), header=False)
    assert "missing file: 2" in str(err.value) and "d (line 4)" in str(err.value)
    assert "looked up with each of .jpg" in str(err.value)
    with caplog.at_level(logging.WARNING):
        ds = CsvDataset(str(tmp_path / "train.csv"), on_bad_image="skip")
    assert len(ds) == 2 and "2 x missing file: b.jpg (line 2)" in caplog.text
    assert "left out 2 rows whose image is missing (on_bad_image: skip)" in ds.report.render()
    (tmp_path / "gone.csv").write_text("x.jpg,0\n")
    with pytest.raises(DataError, match="0 of 1 row kept"):
        CsvDataset(str(tmp_path / "gone.csv"), on_bad_image="skip")


def test_one_hot_labels_are_refused_naming_the_columns(tmp_path):
    photos(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "train.csv").write_text("image_id,healthy,rust,scab\na,1,0,0\nb,0,0,1\n")
    with pytest.raises(DataError, match="label columns healthy, rust, scab hold 0 / 1 values"):
        CsvDataset(str(tmp_path / "train.csv"))
    assert len(CsvDataset(str(tmp_path / "train.csv"), label_column="rust")) == 2


def test_integer_labels_not_from_zero_say_how_they_are_numbered(tmp_path):
    photos(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "t.csv").write_text("a.jpg,10\nb.jpg,2\nc.jpg,1\n")
    ds = CsvDataset(str(tmp_path / "t.csv"))
    assert ds.label_names["class"] == ["1", "2", "10"]  # numeric order
    assert "integer labels 1..10 are not 0..2" in ds.report.render()


def test_one_number_spelled_two_ways_is_warned(tmp_path):
    """'01' and '1' are two classes (labels are text), said as a warning naming both."""
    photos(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "t.csv").write_text("a.jpg,01\nb.jpg,1\nc.jpg,2\n")
    ds = CsvDataset(str(tmp_path / "t.csv"))
    assert ds.label_names["class"] == ["01", "1", "2"]
    (warning,) = ds.report.warnings
    assert warning.kind == "labels of one number" and "'01', '1'" in warning.where
    assert "write 1 one way" in warning.detail


def config(tmp_path: Path, csv: Path, images: Path) -> Path:
    spec = {
        "name": "csv",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"cls": {"name": "linear", "num_classes": None}},
        },
        "data": {
            "train": {"format": "csv", "csv": str(csv), "images": str(images)},
            "val": {"format": "csv", "csv": str(csv), "images": str(images)},
            "image_size": 32,
            "batch_size": 4,
            "num_workers": 0,
        },
        "trainer": {
            "max_steps": 3,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
        },
    }
    path = tmp_path / "csv.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_check_data_split_and_a_short_training_run(tmp_path, capsys):
    csv = kaggle(tmp_path, n=12)
    images = tmp_path / "train_images"
    code, out, _ = run(["check-data", "--format", "csv", "--csv", csv, "--images", images], capsys)
    assert code == 0 and "csv dataset" in out and "images per class (class): 0 4, 1 4, 2 4" in out
    code, out, _ = run(["check-data", "--format", "csv", "--csv", csv], capsys)
    assert code == 1 and "hint: img0 is in" in out
    code, out2, _ = run(["check-data", "--csv", csv], capsys)  # --csv implies --format csv
    assert code == 1 and out2 == out
    code, out, _ = run(["split", csv, "--images", images, "--val", "0.25"], capsys)
    assert code == 0 and "format: csv, csv:" in out
    train, val = tmp_path / "train_train.csv", tmp_path / "train_val.csv"
    assert val.read_text().splitlines()[0] == "id;label" and len(val.read_text().split()) == 4
    path = config(tmp_path, train, images)
    overrides = [f"data.val.csv={val}"]
    code, out, _ = run(["check-data", "--config", path, *overrides], capsys)
    assert code == 0, out
    code, out, err = run(["train", "--config", path, *overrides], capsys)
    assert code == 0, err[-2000:]
    saved = yaml.safe_load((tmp_path / "runs" / "csv" / "config.yaml").read_text())
    assert saved["model"]["heads"]["cls"]["num_classes"] == 3
    assert (tmp_path / "runs" / "csv" / "checkpoints" / "best.ckpt").is_file()


def test_an_integer_label_is_an_index_only_when_no_class_is_an_integer(tmp_path):
    photos(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "val.csv").write_text("image,label\na.jpg,3\nb.jpg,0\nc.jpg,4\n")
    with pytest.raises(DataError) as err:  # not class '5' and class '1' silently
        CsvDataset(str(tmp_path / "val.csv"), class_names=["1", "2", "4", "5"])
    message = str(err.value)
    assert "line 2: a.jpg: label '3' is not one of ['1', '2', '4', '5']" in message
    assert "line 3: b.jpg: label '0' is not one of" in message and "line 4" not in message
    ds = CsvDataset(str(tmp_path / "val.csv"), class_names=["cat", "dog", "fox", "owl", "yak"])
    assert [c for _, c in ds.items] == [3, 0, 4]  # no integer names: indices


def test_one_image_in_two_spellings_is_one_image(tmp_path):
    photos(tmp_path / "train", ["a.jpg", "b.jpg"])
    (tmp_path / "t.csv").write_text(
        "image,label\n./train/a.jpg,cat\ntrain/a.jpg,dog\ntrain/b,dog\ntrain//b.jpg,dog\n"
    )
    with pytest.raises(DataError) as err:
        CsvDataset(str(tmp_path / "t.csv"))
    message = str(err.value)
    assert "line 3: train/a.jpg has label 'dog', line 2 (./train/a.jpg) 'cat'" in message
    ds = CsvDataset(str(tmp_path / "t.csv"), on_bad_label="skip")
    assert [p.name for p, _ in ds.items] == ["b.jpg"]
    assert "line 5: train//b.jpg,dog repeats line 4 (train/b): left out" in ds.report.render()


def test_a_missing_first_image_is_no_header(tmp_path):
    photos(tmp_path, [f"{i:04d}.jpg" for i in range(1, 6)])  # 0000.jpg is missing
    (tmp_path / "t.csv").write_text("".join(f"{i:04d},{['cat', 'dog'][i % 2]}\n" for i in range(6)))
    with pytest.raises(DataError, match=r"missing file: 0000 \(line 1\)"):
        CsvDataset(str(tmp_path / "t.csv"))
    ds = CsvDataset(str(tmp_path / "t.csv"), on_bad_image="skip")
    assert len(ds) == 5 and "no header row: sniffed" in ds.report.render()


def test_the_headers_label_column_is_the_default_in_the_reader_and_split(tmp_path, capsys):
    photos(tmp_path, [f"{i}.jpg" for i in range(8)])
    rows = "".join(f"{i},{i % 2},24,24,{['cat', 'dog'][i // 4]}\n" for i in range(8))
    (tmp_path / "t.csv").write_text("id,fold,width,height,label\n" + rows)
    ds = CsvDataset(str(tmp_path / "t.csv"))
    assert ds.label_names["class"] == ["cat", "dog"]  # not the folds 0, 1
    assert "label column 4 (label): the header's label column" in ds.report.render()
    (tmp_path / "u.csv").write_text("fold,label,image\n0,cat,a.jpg\n")
    photos(tmp_path, ["a.jpg"])
    both = CsvDataset(str(tmp_path / "u.csv"))
    assert (both.items[0][0].name, both.label_names["class"]) == ("a.jpg", ["cat"])
    assert "image column 2 (image): the header's image column" in both.report.render()
    code, out, _ = run(["split", tmp_path / "t.csv", "--val", "0.5"], capsys)
    assert code == 0, out
    val = (tmp_path / "t_val.csv").read_text().splitlines()[1:]
    assert sorted(row[-3:] for row in val) == ["cat", "cat", "dog", "dog"]  # stratified by label
    (tmp_path / "s.tsv").write_text("id\tlabel\n" + "".join(f"{i}\t{i % 2}\n" for i in range(8)))
    code, out, _ = run(["split", tmp_path / "s.tsv", "--val", "0.25"], capsys)
    assert code == 0 and (tmp_path / "s_val.tsv").is_file(), out


def test_a_column_beyond_the_file_is_one_config_error(tmp_path):
    photos(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "t.csv").write_text("image,label\na.jpg,cat\nb.jpg,dog\n")
    with pytest.raises(
        ConfigError,
        match=r"label_column: column 5 is beyond the columns of .*t\.csv, which has 2 \(0 \(image\), 1 \(label\); 0 is the first\)",
    ):
        CsvDataset(str(tmp_path / "t.csv"), label_column=5)
    (tmp_path / "one.csv").write_text("a.jpg\nb.jpg\n")
    with pytest.raises(
        ConfigError, match=r"label_column: column 1 \(the default: give label_column\)"
    ):
        CsvDataset(str(tmp_path / "one.csv"))


def test_class_mismatch_names_the_csv(tmp_path):
    from visionkit.data.classes import class_source

    photos(tmp_path / "imgs", ["a.jpg"])
    (tmp_path / "t.csv").write_text("image,label\na.jpg,cat\n")
    ds = CsvDataset(str(tmp_path / "t.csv"), images=str(tmp_path / "imgs"))
    assert class_source(ds) == str(tmp_path / "t.csv")


def test_predict_of_a_csv_asks_for_the_image_folder(tmp_path, capsys):
    photos(tmp_path / "test_images", ["a.jpg"])
    (tmp_path / "test.csv").write_text("id,label\na,0\n")
    code, out, err = run(
        ["predict", "--input", tmp_path / "test.csv", "--checkpoint", "x.ckpt"], capsys
    )
    message = f"{tmp_path / 'test.csv'} is a CSV file: give the image folder, e.g. --input "
    assert code != 0 and message + f"{tmp_path / 'test_images'}/" in out + err, out + err
