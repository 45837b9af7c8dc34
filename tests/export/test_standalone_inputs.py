"""The standalone predictor finds the images ``visionkit predict`` finds: it did not follow a
symbolic link to a folder (a linked sub-folder's photos were left out without a word, where
``visionkit predict`` reads them, each real folder once), and it predicted twice on a file
named twice (or named and inside a folder given too), where ``visionkit predict`` reads it
once."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.export.test_standalone_agrees import classifier  # noqa: F401  (the fixture)
from visionkit.export import standalone
from visionkit.inference import sources
from visionkit.inference.predict import predict_files


def image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def inputs(tmp_path):
    """photos/a.png, photos/sub/b.png, photos/linked -> ../elsewhere (c.png), a link back up
    (photos/sub/loop -> ..), and the inputs: the folder, a.png again, ./a.png, c.png."""
    photos, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    image(photos / "a.png", 0)
    image(photos / "sub" / "b.png", 1)
    image(elsewhere / "c.png", 2)
    os.symlink(elsewhere, photos / "linked", target_is_directory=True)
    os.symlink(photos, photos / "sub" / "loop", target_is_directory=True)
    again = os.path.join(str(tmp_path), ".", "photos", "a.png")
    return [str(photos), str(photos / "a.png"), again, str(elsewhere / "c.png")]


def test_the_files_are_those_visionkit_predict_reads(inputs):
    expected = [str(p) for p in sources.expand_inputs(inputs)]
    names = [os.path.relpath(p, os.path.dirname(inputs[0])) for p in expected]
    assert names == [
        "photos/a.png",
        "photos/linked/c.png",
        "photos/sub/b.png",
        "elsewhere/c.png",
    ]
    assert standalone.image_files(inputs) == expected


def test_both_programs_predict_once_on_each_image(classifier, inputs, tmp_path, capsys):  # noqa: F811
    model, path = classifier
    assert standalone.main([str(path), *inputs]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    out = predict_files(model, inputs, tmp_path / "out", progress=False)
    records = json.loads((out.parent / "images.json").read_text())
    assert [r["image"] for r in lines] == [r["file_name"] for r in records]
    assert len(lines) == 4
    for line, record in zip(lines, records, strict=True):
        assert line["cls"]["label"] == record["cls"]["label"]
        assert line["cls"]["score"] == pytest.approx(record["cls"]["score"], abs=2e-5)
