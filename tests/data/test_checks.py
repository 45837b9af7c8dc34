"""visionkit.data.checks: the report, the generic sample inspection, skipping, and errors
that cross the DataLoader worker boundary."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from visionkit.data.checks import DataReport, inspect_samples, read_or_skip
from visionkit.errors import AnnotationError, DataError, ImageDecodeError, SampleError


def test_report_groups_problems_by_kind_and_caps_each_kind():
    report = DataReport("x.json", "coco")
    for i in range(13):
        report.add("missing file", f"images/{i}.png")
    report.add("unknown category", "annotation id 4", "category_id 9")
    report.add("box clipped", "annotation id 5", "clipped", severity="warning")
    lines = report.problem_lines("error")
    assert lines[:2] == ["missing file: images/0.png", "missing file: images/1.png"]
    assert "... and 3 more (missing file)" in lines
    assert lines[-1] == "unknown category: annotation id 4: category_id 9"
    err = report.error()
    assert type(err) is DataError and err.report is report  # image files: a DataError
    assert "14 problems (missing file: 13, unknown category: 1)" in str(err)
    only_annotations = DataReport("y.json")
    only_annotations.add("duplicate id", "image id 1", "appears 2 times")
    assert type(only_annotations.error()) is AnnotationError
    text = report.render()
    assert "errors (training stops): 14" in text and "warnings (training goes on): 1" in text


class Listed:
    """A reader without a report of its own."""

    label_names = {"instances": ["a", "b"]}

    def __len__(self):
        return 3

    def __getitem__(self, i):
        if i == 1:
            raise ImageDecodeError("img/1.png", "corrupt or truncated image data")
        return {
            "image": np.zeros((4, 6, 3), np.uint8),
            "image_id": i,
            "boxes": np.zeros((i, 4), np.float32),
            "labels": np.ones(i, np.int64),
            "path": f"img/{i}.png",
        }


def test_inspect_samples_reads_every_sample_of_a_reader_without_a_report():
    report = inspect_samples(Listed(), "listed")
    assert [(p.kind, p.where) for p in report.problems] == [
        ("unreadable image", "sample 1 (img/1.png)")
    ]
    assert report.image_sizes == {(4, 6): 2} and report.boxes_per_image == [0, 2]
    assert report.class_counts["instances"] == {"b": 2}
    assert report.empty_images == ["img/0.png (image id 0)"]


def test_read_or_skip_replaces_unreadable_samples_and_gives_up_with_a_list():
    def load(i):
        if i in (1, 2):
            raise ImageDecodeError(f"{i}.png", "corrupt")
        return {"image_id": i}

    assert read_or_skip(load, 0, 4, "skip") == {"image_id": 0}
    sample = read_or_skip(load, 1, 4, "skip")
    assert sample["image_id"] == 3 and [r["index"] for r in sample["skipped"]] == [1, 2]
    with pytest.raises(ImageDecodeError):
        read_or_skip(load, 1, 4, "error")
    with pytest.raises(DataError, match="2 images in a row could not be read"):
        read_or_skip(lambda i: load(i + 1), 0, 2, "skip")  # samples 0 and 1 both fail


class Failing(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise SampleError(f"sample {i} (image id 7, a/b.png): transform failed: boom")


def test_a_sample_error_from_a_worker_arrives_without_the_worker_traceback():
    loader = DataLoader(Failing(), batch_size=1, num_workers=1)
    with pytest.raises(SampleError) as info:
        next(iter(loader))
    assert str(info.value) == "sample 0 (image id 7, a/b.png): transform failed: boom"


def test_the_image_check_is_a_reader_argument_not_a_global_mode(tmp_path):
    from PIL import Image

    from visionkit.data.readers.folder import ImageFolderDataset
    from visionkit.errors import ConfigError

    (tmp_path / "cat").mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(tmp_path / "cat" / f"{i}.png")
    first = tmp_path / "cat" / "0.png"
    first.write_bytes(first.read_bytes()[:60])  # truncated: the header still reads
    assert len(ImageFolderDataset(tmp_path)) == 2  # header check (the default)
    with pytest.raises(DataError, match="unreadable image"):
        ImageFolderDataset(tmp_path, image_check="decode")
    assert len(ImageFolderDataset(tmp_path)) == 2  # nothing was left switched on
    skipped = ImageFolderDataset(tmp_path, on_bad_image="skip", image_check="decode")
    assert len(skipped) == 1
    with pytest.raises(ConfigError, match="image_check"):
        ImageFolderDataset(tmp_path, image_check="thorough")
