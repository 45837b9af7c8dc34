"""Segmentation geometry that would crash or hang the process inside pycocotools (issue 18
item 7) is a ``bad segmentation`` error of the reader, found before pycocotools sees it:
RLE counts past ``height * width``, compressed RLE strings that do not decode, ``nan`` /
``inf`` / ``1e9`` polygon coordinates.

The CLI runs are subprocesses: without the checks, pycocotools hangs on these polygons (and
older releases write past the mask buffer on these RLEs), which no in-process test survives.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils

from tests.helpers import SIZE, make_coco
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.segmentation_checks import (
    compressed_counts,
    polygon_problem,
    rle_problem,
)
from visionkit.errors import AnnotationError

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
Q = SIZE // 4
#: annotation id (of make_coco's 101..105) -> a segmentation pycocotools cannot survive
BAD = {
    101: {"size": [SIZE, SIZE], "counts": [0, 10**8]},  # uncompressed RLE past h * w
    102: {"size": [SIZE, SIZE], "counts": "PPPPPPPPPP"},  # compressed: ends inside a number
    103: [[Q, Q, math.nan, Q, 2 * Q, 2 * Q]],
    104: [[Q, Q, 2 * Q, math.inf, 2 * Q, 2 * Q]],
    105: [[Q, Q, 1e9, Q, 2 * Q, 2 * Q]],
}


def bad_dataset(root: Path, ids: list[int] | None = None) -> Path:
    def edit(data: dict) -> None:
        for ann in data["annotations"]:
            if ann["id"] in (ids or BAD):
                ann["segmentation"] = BAD[ann["id"]]

    return make_coco(root, num_images=5, edit=edit)


def visionkit(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m visionkit.cli ARGS`` as a user runs it (a hang fails the test)."""
    return subprocess.run(
        [sys.executable, "-m", "visionkit.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_check_data_reports_every_bad_segmentation_and_exits_1(tmp_path):
    root = bad_dataset(tmp_path / "data")
    result = visionkit("check-data", "--format", "coco", "--images", root, "masks=true")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # not a signal (negative), not a hang
    assert "Traceback" not in output
    for ann_id in BAD:
        line = next(x for x in result.stdout.splitlines() if f"annotation id {ann_id} " in x)
        assert line.strip().startswith("bad segmentation: ")
        assert f"images/{ann_id - 100}.png" in line  # the image file
    assert "RLE counts sum to 100000000 pixels, expected height * width = 32 * 32" in output
    assert "the compressed RLE counts string ends inside a number" in output
    for value in ("nan", "inf", "1000000000.0"):
        assert f"is {value} (expected numbers within [-32, 64] for x, [-32, 64] for y)" in output


def test_training_stops_with_bad_segmentation_before_any_step(tmp_path):
    root = bad_dataset(tmp_path / "data", ids=[102, 105])
    config = {
        "name": "bad",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"inst": {"name": "fcos_mask", "num_convs": 1}},
        },
        "data": {"train": {"format": "coco", "images": str(root)}, "image_size": SIZE},
        "trainer": {"max_epochs": 1, "accelerator": "cpu"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = visionkit("train", "--config", path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    for ann_id in (102, 105):
        assert (
            f"bad segmentation: annotation id {ann_id} (images/{ann_id - 100}.png" in result.stderr
        )
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_garbage_compressed_rle_is_refused_character_by_character(tmp_path):
    root = make_coco(tmp_path / "data", num_images=1)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["segmentation"] = {"size": [SIZE, SIZE], "counts": "garbage!"}
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as info:
        CocoDataset(root, masks=True)
    assert (
        "bad segmentation: annotation id 101 (images/1.png (image id 1)): character 2 ('r')"
        in str(info.value)
    )


@pytest.mark.parametrize(
    "rle, problem",
    [
        ({"size": [4, 6], "counts": [0, 25]}, "RLE counts sum to 25 pixels, expected height * "),
        ({"size": [4, 6], "counts": [0, -1, 25]}, "RLE count 1 is -1: expected non-negative"),
        ({"size": [4, 6], "counts": [0, 1.5, 22.5]}, "RLE counts[1] is '1.5': expected non-"),
        ({"size": [4, 6], "counts": [0, True, 23]}, "RLE counts[1] is 'True': expected non-"),
        ({"size": [4, 6], "counts": None}, "RLE counts is a NoneType: expected a string"),
        ({"size": [4, 6], "counts": ""}, "the compressed RLE counts string is empty"),
        ({"size": [4, 6], "counts": "0\x00"}, "character 1 ('\\x00') of the compressed RLE"),
        ({"size": [4, 6], "counts": "9é"}, "character 1 ('é') of the compressed RLE"),
        ({"size": [4, 6], "counts": "ooooooo0"}, "a compressed RLE count takes 8 characters"),
        ({"size": [4, 6], "counts": "00"}, "RLE counts sum to 0 pixels"),
        ({"size": [4, 7], "counts": [0, 28]}, "RLE size [4, 7] differs from the image size [4, 6]"),
        ({"size": [4], "counts": [0, 24]}, "RLE size [4]: expected [height, width], two integers"),
        ({"size": [4, 6.5], "counts": [0, 24]}, "RLE size [4, 6.5]: expected [height, width]"),
    ],
)
def test_rle_problems_say_what_is_wrong(rle, problem):
    found = rle_problem(rle, 4, 6)
    assert found is not None and found.startswith(problem), found


def test_rles_as_pycocotools_writes_them_pass_and_read_back_exactly():
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        mask = rng.random((h, w)) < rng.random()
        if trial % 2:  # long runs: counts of several characters
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h) :, rng.integers(0, w) :] = True
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        text = rle["counts"].decode()
        assert rle_problem({"size": [h, w], "counts": text}, h, w) is None
        flat = mask.flatten(order="F").astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
        runs = np.diff(np.concatenate([[0], edges])).tolist()
        assert compressed_counts(text) == runs
    assert rle_problem({"size": [4.0, 6.0], "counts": [0, 24]}, 4, 6) is None  # floats of tools


@pytest.mark.parametrize(
    "polygon, problem",
    [
        ([[0, 0, 6, 0, 6, math.nan]], "polygon 0: coordinate 5 is nan"),
        ([[0, 0, 6, 0, 6, 4], [0, 0, -math.inf, 0, 6, 4]], "polygon 1: coordinate 2 is -inf"),
        (
            [[0, 0, 12.5, 0, 6, 4]],
            "polygon 0: coordinate 2 is 12.5 (expected numbers within [-6, 12]",
        ),
        ([[0, 0, 6, 0, 6, -4.5]], "polygon 0: coordinate 5 is -4.5"),
        ([[0, 0, 6, 0, 6, 10**400]], "polygon 0: coordinate 5 is 1000000000"),
        ([[0, 0, "6", 0, 6, 4]], "polygon 0: coordinate 2 is '6'"),
        ([[0, 0, None, 0, 6, 4]], "polygon 0: coordinate 2 is None"),
        ([[0, 0, True, 0, 6, 4]], "polygon 0: coordinate 2 is True"),
    ],
)
def test_polygon_problems_say_what_is_wrong(polygon, problem):
    found = polygon_problem(polygon, 4, 6)
    assert found is not None and found.startswith(problem), found


def test_polygons_up_to_one_image_size_outside_pass():
    assert polygon_problem([[-6, -4, 12, -4, 12, 8, -6, 8]], 4, 6) is None


def test_a_bad_coordinate_beside_good_polygons_is_an_error_not_a_drop(tmp_path):
    root = make_coco(tmp_path / "data", num_images=1)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][0]["segmentation"] += [[1, 2, 3, 4], [Q, Q, 1e9, Q, 2 * Q, 2 * Q]]
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="annotation id 101 .*polygon 2: coordinate 2 is"):
        CocoDataset(root, masks=True)
    assert len(CocoDataset(root)[0]["boxes"]) == 1  # boxes only: segmentations are not read
