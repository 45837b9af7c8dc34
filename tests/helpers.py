"""Helpers of the reliability tests (marked ``reliability``): small broken datasets made on
the fly, and the CLI run as a user runs it.

Every reliability test goes through :func:`visionkit.cli.main` and checks the exit status, that the
output names the file or id at fault, and that no Python traceback reaches the user.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from visionkit.cli import main

SIZE = 32
CATEGORIES = [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]


def write_image(path: Path, size: tuple[int, int] = (SIZE, SIZE), seed: int = 0, **save) -> Path:
    """An RGB image (``size`` = (H, W)) with a bright square, saved by suffix."""
    h, w = size
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    pixels[h // 4 : h // 2, w // 4 : w // 2] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save)
    return path


def make_coco(
    root: Path,
    num_images: int = 4,
    edit: Any = None,
    categories: list[dict[str, Any]] | None = None,
) -> Path:
    """``root/images/<i>.png`` and ``root/annotations.json``: one box per image (the bright
    square). ``edit(data)`` may change the json before it is written."""
    images, anns = [], []
    for i in range(1, num_images + 1):
        write_image(root / "images" / f"{i}.png", seed=i)
        images.append({"id": i, "file_name": f"images/{i}.png", "width": SIZE, "height": SIZE})
        q = SIZE // 4
        anns.append(
            {
                "id": 100 + i,
                "image_id": i,
                "category_id": 1 + i % 2,
                "bbox": [q, q, q, q],
                "area": q * q,
                "iscrowd": 0,
                "segmentation": [[q, q, 2 * q, q, 2 * q, 2 * q, q, 2 * q]],
            }
        )
    data = {"images": images, "annotations": anns, "categories": categories or CATEGORIES}
    if edit is not None:
        edit(data)
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def _follow_captured_stderr() -> None:
    """Point Lightning's log handlers (made once per process, on the stderr of the test that
    first imported Lightning) at this test's captured stderr: a handler left on a closed
    stream prints a "Logging error" with a traceback of the logging module itself."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stderr


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``visionkit <argv>`` in-process: ``(exit status, stdout, stderr)``; never a traceback."""
    _follow_captured_stderr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (out + err)[-3000:]
    return code, out, err


def detection_config(
    path: Path, train: Path, val: Path | None = None, data: dict | None = None, **extra: Any
) -> Path:
    """A tiny FCOS config (simple_cnn → FPN, 32 px, one step, one validation batch, no validation set unless
    ``val`` is given) written to ``path``."""
    config = {
        "name": "rel",
        "output_dir": str(path.parent / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"det": {"name": "fcos", "num_convs": 1}},
        },
        "data": {
            "train": {"format": "coco", "images": str(train)},
            **({"val": {"format": "coco", "images": str(val)}} if val else {}),
            "image_size": SIZE,
            "batch_size": 2,
            "num_workers": 0,
            **(data or {}),
        },
        "optimizer": {"name": "adamw", "lr": 0.001},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 1,
            "limit_val_batches": 1,
            "accelerator": "cpu",
            "precision": "32-true",
            "devices": 1,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def predict_at_score_thresh(model: Any) -> Any:
    """``model`` whose predictions keep what its box heads keep for mAP (each head's
    ``score_thresh``) instead of the default 0.25 of a model that training has not given a
    threshold of its own (``meta["predict_conf"]``): an untrained head scores under 0.25."""
    model.meta["predict_conf"] = {
        name: float(head.score_thresh)
        for name, head in model.heads.items()
        if hasattr(head, "score_thresh")
    }
    return model
