"""Session 39: a CSV whose image and label are not its first two columns (pandas' index
column first: ``idx,site,pic,age,result``), without header words naming them, was read by
its columns 0 and 1: every image "missing" (``0 (line 2): no such image``); it is now refused
with the columns to name, and ``visionkit split`` of such a CSV takes ``--image-column`` /
``--label-column`` (before: no way to name them, the rows split by the second column). The
refusal asks only for the column not given, naming the header's label column where it has one,
and the split names the label column it stratified by when ``--label-column`` was not given."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import run
from visionkit.data.readers.csv_labels import CsvDataset
from visionkit.data.split import split_dataset
from visionkit.errors import ConfigError, DataError

LABELS = ["benign", "malignant"]


def indexed_csv(root: Path, header: bool = True, n: int = 10) -> Path:
    """``root/skin.csv``: index, site, image, age, label (the label a tenth benign...)."""
    (root / "img").mkdir(parents=True)
    lines = ["idx,site,pic,age,result"] if header else []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / "img" / f"p{i}.jpg")
        lines.append(f"{i},site{i % 3},img/p{i}.jpg,{30 + i},{LABELS[i % 2]}")
    (root / "skin.csv").write_text("\n".join(lines) + "\n")
    return root / "skin.csv"


@pytest.mark.parametrize("header", [True, False])
def test_unnamed_columns_where_another_column_holds_the_images_are_refused(tmp_path, header):
    path = indexed_csv(tmp_path, header)
    with pytest.raises(ConfigError) as err:
        CsvDataset(str(path))
    which = "pic" if header else "2"
    columns = "0 (idx), 1 (site), 2 (pic), 3 (age), 4 (result)" if header else "0, 1, 2, 3, 4"
    assert (
        "image_column not set, and the first columns were guessed: column 0 names no image "
        f"under {tmp_path} (e.g. '0') where column 2 does; give image_column: {which} and "
        f"label_column: the column of the labels (its columns: {columns}"
    ) in str(err.value)
    named = {"image_column": "pic", "label_column": "result"} if header else {}
    named = named or {"image_column": 2, "label_column": 4}
    ds = CsvDataset(str(path), **named)
    assert ds.label_names["class"] == LABELS and len(ds) == 10


def test_header_words_at_other_columns_were_and_are_read(tmp_path):
    path = indexed_csv(tmp_path)
    path.write_text(path.read_text().replace("idx,site,pic,age,result", ",site,image,age,label"))
    ds = CsvDataset(str(path))
    assert ds.label_names["class"] == LABELS and len(ds) == 10


def test_split_takes_the_label_and_image_columns(tmp_path, capsys):
    path = indexed_csv(tmp_path)
    with pytest.raises(ConfigError, match="give --image-column pic and --label-column the col"):
        split_dataset(path, val=0.2)
    code, out, _ = run(
        ["split", str(path), "--val", "0.2", "--image-column", "pic", "--label-column", "4"],
        capsys,
    )
    assert code == 0
    with open(tmp_path / "skin_val.csv", newline="") as f:
        val = list(csv.reader(f))
    assert val[0] == ["idx", "site", "pic", "age", "result"]
    assert sorted(r[4] for r in val[1:]) == LABELS  # stratified by the result column
    assert "image_column: pic, label_column: 4}" in out  # the reader told the same columns
    ds = CsvDataset(str(tmp_path / "skin_train.csv"), image_column="pic", label_column=4)
    assert len(ds) == 8
    with pytest.raises(DataError, match="only for a CSV"):
        split_dataset(tmp_path / "img", label_column="result")
    with pytest.raises(ConfigError, match="--label-column: no column 'nope' in the header"):
        split_dataset(path, label_column="nope", overwrite=True)


def test_the_refusal_asks_only_for_what_is_missing_and_names_the_headers_label(tmp_path):
    path = indexed_csv(tmp_path)
    # label_column given: before, "give image_column: pic and label_column: the column of..."
    with pytest.raises(ConfigError) as err:
        CsvDataset(str(path), label_column="result")
    assert "; give image_column: pic (its columns: 0 (idx)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        split_dataset(path, val=0.2, label_column="result")
    assert "; give --image-column pic (its columns: 0 (idx)" in str(err.value)
    # a header with a label word (two image words, id and filename: column 0 guessed)
    path.write_text(
        path.read_text().replace("idx,site,pic,age,result", "id,site,filename,age,label")
    )
    with pytest.raises(ConfigError) as err:
        CsvDataset(str(path))
    assert "give image_column: filename and label_column: label (its columns" in str(err.value)
    with pytest.raises(ConfigError) as err:
        split_dataset(path, val=0.2)
    assert "give --image-column filename and --label-column label (its" in str(err.value)


def test_split_names_the_label_column_it_stratified_by_when_not_given(tmp_path, capsys):
    path = indexed_csv(tmp_path, header=False)
    code, out, _ = run(["split", str(path), "--val", "0.2", "--image-column", "2"], capsys)
    assert code == 0
    # column 1 (the site) was guessed, and nothing said so
    assert (
        "split by the labels of column 1, a guess (3 labels in 10 rows, each split in the same "
        "proportions); --label-column COL to name another"
    ) in out
    path = indexed_csv(tmp_path / "named")
    path.write_text(path.read_text().replace("result", "label"))
    report = split_dataset(path, val=0.2, image_column="pic")
    assert "split by the labels of column 4 (label), the header's label column (2 labels in 10" in (
        report.summary()
    )
