"""Session 38: ``visionkit eval`` never compared the scored split's label settings with the
training split's (``runner.evaluate`` built the split directly): ``eval`` of a CamVid model
trained with ``ignore_index: 3`` on ``data.val.ignore_index=null`` scored void pixels as a
class. Now the split is compared with the checkpoint's saved ``data.train``: the same label
files read otherwise stop the evaluation with what to write; other files get a warning, and
the checkpoint still evaluates."""

from __future__ import annotations

import logging
import shutil

import numpy as np
from PIL import Image

from tests.data.test_masks import write_void_folder
from tests.data.test_semantic_label_range import segmentation_config
from tests.helpers import run


def test_eval_compares_the_split_with_the_checkpoints_training_labels(tmp_path, capsys, caplog):
    root = write_void_folder(tmp_path / "camvid", void=3)
    config = segmentation_config(tmp_path, root, root)
    trained = ["data.train.ignore_index=3", "data.val.ignore_index=3"]
    code, _, err = run(["train", "--config", config, *trained], capsys)
    assert code == 0, err
    ckpt = next((tmp_path / "runs").rglob("best.ckpt"))

    code, out, err = run(["eval", "--checkpoint", ckpt, "data.val.ignore_index=null"], capsys)
    assert code == 2, out + err
    assert "data.val.ignore_index: 255 (the default) but data.train.ignore_index: 3" in err
    assert "write ignore_index: 3 in data.val too (data.val.ignore_index=3)" in err
    assert "(the checkpoint's data.train, as it was trained)" in err

    other = tmp_path / "relabelled"  # other label files, of 255 for void: a warning only
    shutil.copytree(root, other)
    for mask in (other / "masks").glob("*.png"):
        values = np.array(Image.open(mask))
        Image.fromarray(np.where(values == 3, 255, values).astype(np.uint8)).save(mask)
    argv = ["eval", "--checkpoint", ckpt, f"data.val.root={other}", "data.val.ignore_index=null"]
    with caplog.at_level(logging.WARNING):
        code, out, err = run(argv, capsys)
    assert code == 0, out + err
    warned = caplog.text + err
    assert (
        "data.val.ignore_index: 255 (the default) but data.train.ignore_index: 3: they read other"
        in warned
    )
    assert "seg/mIoU" in out
