"""``data.val_image_size``: the evaluation pipeline's size where it differs from training's
(validation, ``eval``, ``predict``, export), filled where its steps leave their size out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visionkit.build import build_pipelines
from visionkit.config import load_config
from visionkit.data.image_size import pipeline_steps, split_image_size, unused_image_size_note
from visionkit.data.transforms import apply_pipeline
from visionkit.engine.eval_checks import check_eval_overrides
from visionkit.engine.resume import image_size_note
from visionkit.errors import ConfigError
from visionkit.export.graph import config_image_size

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "custom" / "detect_fcos_r18.yaml"
PATHS = ["data.train.root=a", "data.val.root=b"]
HEADS = {"cls": {"name": "linear", "num_classes": 2}}


def config(data: dict, overrides=()):
    return load_config({"model": {"heads": HEADS}, "data": data}, list(overrides))


def test_the_evaluation_steps_take_val_image_size_and_the_training_steps_image_size():
    steps = {"train": [{"name": "LongestMaxSize"}, {"name": "RandomCrop"}],
             "val": [{"name": "LongestMaxSize"}, {"name": "PadIfNeeded"}]}  # fmt: skip
    cfg = config({"image_size": 192, "val_image_size": 224, "transforms": steps})
    assert cfg.data.transforms.train == [
        {"name": "LongestMaxSize", "max_size": 192},
        {"name": "RandomCrop", "height": 192, "width": 192},
    ]
    assert cfg.data.transforms.val == [
        {"name": "LongestMaxSize", "max_size": 224},
        {"name": "PadIfNeeded", "min_height": 224, "min_width": 224},
    ]
    # left out (null): the evaluation follows data.image_size, as before the key existed
    cfg = config({"image_size": 192, "transforms": steps})
    assert cfg.data.val_image_size is None
    assert cfg.data.transforms.val[0] == {"name": "LongestMaxSize", "max_size": 192}
    # a size written in the step wins over both
    own = {"train": steps["train"], "val": [{"name": "LongestMaxSize", "max_size": 160}]}
    cfg = config({"image_size": 192, "val_image_size": 224, "transforms": own})
    assert cfg.data.transforms.val == [{"name": "LongestMaxSize", "max_size": 160}]


def test_the_default_pipelines_resize_to_each_splits_size():
    cfg = config({"image_size": 64, "val_image_size": [80, 96]})
    assert pipeline_steps(cfg.data, train=True)[0] == {"name": "Resize", "height": 64, "width": 64}
    assert pipeline_steps(cfg.data, train=False) == [{"name": "Resize", "height": 80, "width": 96}]
    # a checkpoint's config is a plain dict: the same rule
    saved = cfg.model_dump()["data"]
    assert pipeline_steps(saved, train=False) == [{"name": "Resize", "height": 80, "width": 96}]
    assert split_image_size(saved, train=True) == 64
    pipelines = build_pipelines(cfg.data, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    sample = {"image": np.zeros((50, 70, 3), np.uint8), "image_id": 1, "orig_size": (50, 70)}
    assert tuple(apply_pipeline(pipelines["val"], sample)["image"].shape) == (3, 80, 96)
    assert tuple(apply_pipeline(pipelines["train"], sample)["image"].shape) == (3, 64, 64)


def test_the_detection_recipe_trains_at_192_and_evaluates_at_224():
    cfg = load_config(RECIPE, PATHS)
    assert (cfg.data.image_size, cfg.data.val_image_size) == (192, 224)
    assert cfg.data.transforms.val == [{"name": "LongestMaxSize", "max_size": 224}]
    assert cfg.data.transforms.train[0] == {"name": "LongestMaxSize", "max_size": 192}
    assert {"name": "RandomCrop", "height": 192, "width": 192}.items() <= (
        cfg.data.transforms.train[2].items()
    )
    assert config_image_size({"config": cfg.model_dump()}) == (224, 224)  # export's check size
    assert config_image_size({"config": {"data": {"image_size": 96}}}) == (96, 96)
    assert config_image_size({"config": {}}) == (128, 128)


def test_a_bad_val_image_size_is_one_line_saying_what_it_takes():
    with pytest.raises(ConfigError) as info:
        load_config(RECIPE, [*PATHS, "data.val_image_size=big"])
    assert info.value.problems[0] == (
        "data.val_image_size: expected a positive int, [height, width] or null "
        "(data.image_size), e.g. 224 or [192, 256], got 'big'"
    )
    with pytest.raises(ConfigError) as info:
        load_config(RECIPE, [*PATHS, "data.val_image_size=[0, 64]"])
    assert info.value.problems[0] == (
        "data.val_image_size: expected [height, width] whose height is greater than 0, got [0, 64]"
    )


def test_a_val_image_size_that_no_evaluation_step_follows_is_warned_of():
    own = {"val": [{"name": "Resize", "height": 112, "width": 112}]}
    cfg = config({"image_size": 96, "val_image_size": 128, "transforms": own})
    note = unused_image_size_note(cfg.data, "val_image_size")
    assert note == (
        "data.val_image_size=128 reaches no transform: each gives its own size "
        "(data.transforms.val[0] Resize height=112, width=112); leave a size out to follow "
        "data.val_image_size, or change it"
    )
    # data.image_size still sizes the (default) training pipeline: nothing said of it
    assert unused_image_size_note(cfg.data) is None
    assert image_size_note(cfg.data, None) == note
    assert unused_image_size_note(config({"image_size": 96}).data, "val_image_size") is None
    # a resumed run given another evaluation size would record it and not use it
    resumed = config({"image_size": 96, "val_image_size": 160, "transforms": {"val": [
        {"name": "Resize", "height": 128, "width": 128}]}})  # fmt: skip
    with pytest.raises(ConfigError, match="--resume last.ckpt: data.val_image_size=160"):
        image_size_note(resumed.data, Path("last.ckpt"), ["data.val_image_size=160"])
    assert image_size_note(resumed.data, Path("last.ckpt"), []) is None


def test_eval_refuses_val_image_size_and_names_imgsz():
    with pytest.raises(ConfigError) as info:
        check_eval_overrides(["data.val_image_size=256"])
    assert info.value.problems == [
        "'data.val_image_size=256': the evaluation size is given by --imgsz N (or --imgsz H,W), "
        "which resizes every sizing step of the evaluation pipeline; data.val_image_size does "
        "not reach the sizes a checkpoint's config has written into data.transforms.val"
    ]


def test_an_evaluation_size_far_from_the_training_size_is_warned_of():
    """``data.image_size=320`` on the detection recipe (its advice for small objects), or
    ``=128``, leaves its ``val_image_size: 224``: said when the run starts, with a size to
    give (7/6 of the training size, up to a multiple of 32, as the recipe's 224 for 192)."""
    cfg = load_config(RECIPE, [*PATHS, "data.image_size=320"])
    assert image_size_note(cfg.data, None, ["data.image_size=320"]) == (
        "data.val_image_size=224 is smaller than data.image_size=320: validation, eval and "
        "predict would see the objects at other sizes than training; change it with "
        "data.image_size (e.g. data.val_image_size=384, about 7/6 of it as in the detection "
        "recipe) or set it to null to follow data.image_size"
    )
    cfg = load_config(RECIPE, [*PATHS, "data.image_size=128"])
    assert image_size_note(cfg.data, None).startswith(
        "data.val_image_size=224 is over 1.4 times data.image_size=128: validation, eval and "
        "predict would see the objects at other sizes than training; change it with "
        "data.image_size (e.g. data.val_image_size=160,"
    )
    assert image_size_note(load_config(RECIPE, PATHS).data, None) is None  # 224 for 192
    unset = load_config(RECIPE, [*PATHS, "data.image_size=320", "data.val_image_size=null"])
    assert image_size_note(unset.data, None) is None
    tall = config({"image_size": [96, 128], "val_image_size": [112, 112]})
    assert image_size_note(tall.data, None).startswith(
        "data.val_image_size=[112, 112] is smaller than data.image_size=[96, 128]: "
    )
    assert "(e.g. data.val_image_size=[128, 160]," in image_size_note(tall.data, None)
    # a resumed run was told when it started
    assert (
        image_size_note(load_config(RECIPE, [*PATHS, "data.image_size=320"]).data, Path("x"))
        is None
    )


def test_export_checks_and_imgsz_take_the_evaluation_size():
    from types import SimpleNamespace

    from visionkit.export.graph import check_sizes_of
    from visionkit.inference.options import data_at

    model = SimpleNamespace(meta={"config": {"data": {"image_size": 192, "val_image_size": 224}}})
    assert check_sizes_of(model, None) == [(224, 224), (256, 288)]  # not 192's
    assert check_sizes_of(model, 96)[0] == (96, 96)
    old = SimpleNamespace(meta={"config": {"data": {"image_size": 160}}})  # before the key
    assert check_sizes_of(old, None)[0] == (160, 160)
    # --imgsz: every evaluation step at the size given, and the config says that size
    data = load_config(RECIPE, PATHS).model_dump()["data"]
    at = data_at(data, (320, 320))
    assert at["transforms"]["val"] == [{"name": "LongestMaxSize", "max_size": 320}]
    assert (at["image_size"], at["val_image_size"]) == (320, None)
    assert split_image_size(at, train=False) == 320


def test_the_suggested_evaluation_size_is_never_warned_of_itself():
    from visionkit.data.image_size import eval_size_note

    for side in range(16, 1025):
        note = eval_size_note({"image_size": side, "val_image_size": side * 2})
        suggested = int(note.split("data.val_image_size=")[2].split(",")[0])
        assert eval_size_note({"image_size": side, "val_image_size": suggested}) is None, side
    # the bounds: the training size itself and 1.4 times it are not said
    assert eval_size_note({"image_size": 100, "val_image_size": 100}) is None
    assert eval_size_note({"image_size": 100, "val_image_size": 140}) is None
    assert eval_size_note({"image_size": 100, "val_image_size": 141}) is not None
    assert eval_size_note({"image_size": 100, "val_image_size": 99}) is not None
