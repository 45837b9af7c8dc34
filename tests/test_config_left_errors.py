"""Configuration and argument mistakes a user still met after session 38, each made as a user
makes it (a library call, a command, a YAML file): the error says what was wrong, where (the
argument, the key path as written, the file and line) and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionkit.config import load_config
from visionkit.errors import ConfigError

HEADS = "  heads:\n    cls: {name: linear, num_classes: 3}\n"
MINIMAL = {
    "model": {"backbone": {"name": "simple_cnn"}, "heads": {"cls": {"name": "linear"}}},
}


def error_of(source, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return info.value


@pytest.mark.parametrize(
    ("given", "problems"),
    [
        ({"conf": 2}, ["conf (--conf): a score threshold in [0, 1), got 2"]),
        (
            {"imgsz": -1},
            ["imgsz (--imgsz): one size (640) or height,width (480,640) in pixels, got -1"],
        ),
        ({"split": "train"}, ["split (--split): expected one of val, test, got 'train'"]),
        ({"tta": "mirror"}, ["tta (--tta): unknown test-time augmentation 'mirror'; valid: flip"]),
    ],
)
def test_a_bad_argument_of_evaluate_is_headed_as_one(tmp_path: Path, given, problems):
    # evaluate(conf=2) was headed "invalid configuration:", as if the YAML were wrong;
    # evaluate(split="train") "invalid command-line option: --split ..." of a library call;
    # evaluate(tta="mirror") a ValueError traceback once the checkpoint and data were read
    from visionkit.engine.runner import evaluate

    with pytest.raises(ConfigError) as info:
        evaluate(tmp_path / "never-read.ckpt", **given)
    assert info.value.problems == problems
    assert str(info.value).startswith("invalid argument of evaluate():\n  ")


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"device": "tpu"}, "device (--device) 'tpu': unknown device; expected auto, cpu, cuda"),
        ({"device": "cpu", "half": True}, "half (--half): float16 inference needs a CUDA GPU"),
    ],
)
def test_a_bad_device_of_evaluate_is_an_argument_not_a_command_line_option(
    tmp_path: Path, given, problem
):
    # evaluate(device="tpu") was headed "invalid command-line option: --device 'tpu'" in a
    # library call that has no command line
    from visionkit.engine.runner import evaluate

    with pytest.raises(ConfigError) as info:
        evaluate(tmp_path / "never-read.ckpt", **given)
    assert str(info.value).startswith(f"invalid argument of evaluate():\n  {problem}")


def test_thresholds_for_a_model_without_detection_head_name_the_arguments():
    from visionkit import create_model
    from visionkit.engine.runner import evaluate

    model = create_model({**MINIMAL, "model": {**MINIMAL["model"], "heads": {"cls": {
        "name": "linear", "num_classes": 2}}}})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        evaluate(model, conf=0.3, max_det=5)
    text = str(info.value)
    assert text.startswith(
        "invalid argument of evaluate():\n  conf (--conf) / max_det (--max-det): the checkpoint "
        "has no detection head (heads: cls (ClassificationHead))"
    ), text


def test_eval_on_the_command_line_still_names_the_option(tmp_path: Path, capsys):
    from visionkit.cli import main

    assert main(["eval", "--checkpoint", str(tmp_path / "x.ckpt"), "--conf", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: invalid command-line option:\n  conf (--conf): a score threshold in [0, 1), got 2.0"
    ), err


def test_check_data_names_the_file_and_line_of_a_config_problem(tmp_path: Path, capsys):
    # train --config said "c.yaml:6: data.train.root: not set"; check-data --config, run to
    # find such problems before training, said "invalid configuration:" with no file or line
    from visionkit.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "data:\n  train: {format: folder}\n"
    )
    assert main(["check-data", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: invalid configuration in {config}:\n  {config}:6: data.train.root: not set"
    ), err
    # set on the command line: said so, with no line of the file (as train says it)
    assert main(["check-data", "--config", str(config), "data.train.root=null"]) == 2
    err = capsys.readouterr().err
    assert "\n  data.train.root: not set" in err
    assert "\n  (set on the command line, not in the file: data.train.root=null)" in err


def test_a_key_yaml_reads_as_a_boolean_is_named_as_written(tmp_path: Path):
    # yes:, NO:, Off:, on: were named true / false ("model.heads.true: ... YAML reads true as
    # a boolean"), a key the file does not hold, at the line of the mapping above it; a key
    # of a fixed section was pydantic's "trainer[1]: Keys should be strings, got True"
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n"
        "  backbone: {name: simple_cnn, kwargs: {Off: 1}}\n"
        "  heads:\n"
        "    yes: {name: linear, num_classes: 3}\n"
        "    cls: {name: linear, num_classes: 3}\n"
        "trainer:\n"
        "  max_epochs: 1\n"
        "  on: 2\n"
    )
    err = error_of(config)
    assert err.problems == [
        "model.backbone.kwargs.Off: a key here is text, but YAML reads Off as a boolean: write "
        "it in quotes ('Off': ...)",
        "model.heads.yes: a head's name is text (letters, digits and _, not starting with a "
        "digit); YAML reads yes as a boolean; name the head after its task, e.g. det, seg, cls "
        "(its metrics are named so: det/mAP)",
        "trainer.on: a key here is text, but YAML reads on as a boolean: write it in quotes "
        "('on': ...)",
    ]
    assert err.locations == [f"{config}:{line}" for line in (2, 4, 8)]
    # written in an override's value: named so too, with no line of the file
    err = error_of(MINIMAL, ["optimizer.param_groups={Off: {lr_mult: 2}}"])
    assert err.problems == [
        "optimizer.param_groups.Off: a key here is text, but YAML reads Off as a boolean: "
        "write it in quotes ('Off': ...)"
    ]


@pytest.mark.parametrize(
    ("groups", "problems"),
    [
        # a key that is not text: its value's problem was "optimizer.param_groups[1].lr" (a
        # list item's path) and "did you mean optimizer.lr?", which a group does not take
        (
            "{1: {lr: 0.1}}",
            [
                "optimizer.param_groups.1: a key here is text, but YAML reads 1 as a number: "
                "write it in quotes ('1': ...)",
                "optimizer.param_groups.1.lr: unknown key; valid keys: lr_mult",
            ],
        ),
        (
            "{backbone: {lr: 0.1}}",
            ["optimizer.param_groups.backbone.lr: unknown key; valid keys: lr_mult"],
        ),
    ],
)
def test_a_param_group_key_gets_no_hint_of_another_section(groups, problems):
    assert error_of(MINIMAL, [f"optimizer.param_groups={groups}"]).problems == problems
    # a key written in the wrong fixed section still gets the hint
    assert error_of(MINIMAL, ["trainer.lr=0.1"]).problems == [
        "trainer.lr: unknown key; did you mean optimizer.lr? (a key of optimizer:)"
    ]


def test_a_refused_scheduler_name_lists_every_name_it_takes():
    # it said "expected 'cosine', 'step', 'onecycle' or 'constant' (in any case)", though
    # torch's OneCycleLR, CosineAnnealingLR and MultiStepLR are taken too
    problem = error_of(MINIMAL, ["scheduler.name=StepLR"]).problems[0]
    assert problem == (
        "scheduler.name: expected 'cosine', 'step', 'onecycle' or 'constant' (also written "
        "'CosineAnnealingLR', 'MultiStepLR', 'OneCycleLR'; in any case), got 'StepLR'"
    )
    for written, name in [("CosineAnnealingLR", "cosine"), ("multisteplr", "step")]:
        assert load_config(MINIMAL, [f"scheduler.name={written}"]).scheduler.name == name


GROUP_CONFIG = "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "optimizer:\n  param_groups:\n"


def test_an_override_key_is_not_renamed_to_a_boolean_key_of_the_file(tmp_path: Path):
    # the file's yes: (read as true) and the override's text key "true": the override's
    # problem was named "c.yaml:7: optimizer.param_groups.yes.lr", a key of the file, without
    # the note that the command line set it
    config = tmp_path / "c.yaml"
    config.write_text(GROUP_CONFIG + "    yes: {lr_mult: 2}\n")
    err = error_of(config, ["optimizer.param_groups.true.lr=1"])
    assert err.problems == [
        "optimizer.param_groups.yes: a key here is text, but YAML reads yes as a boolean: write "
        "it in quotes ('yes': ...)",
        "optimizer.param_groups.true.lr: unknown key; valid keys: lr_mult",
        "(set on the command line, not in the file: optimizer.param_groups.true.lr=1)",
    ]
    assert err.locations == [f"{config}:7", None, None]


def test_a_quoted_true_key_is_not_renamed_to_a_boolean_key_beside_it(tmp_path: Path):
    # 'true' (text) and yes (read as true) in one mapping: the problem of 'true' was named
    # yes, at yes's line
    config = tmp_path / "c.yaml"
    config.write_text(GROUP_CONFIG + "    'true': {lr: 0.1}\n    yes: {lr_mult: 2}\n")
    err = error_of(config)
    assert sorted(zip(err.locations, err.problems, strict=True)) == [
        (
            f"{config}:7",
            "optimizer.param_groups.true.lr: unknown key; valid keys: lr_mult",
        ),
        (
            f"{config}:8",
            "optimizer.param_groups.yes: a key here is text, but YAML reads yes as a boolean: "
            "write it in quotes ('yes': ...)",
        ),
    ]


def test_a_problem_inside_a_head_named_by_a_boolean_key_is_named_as_written(tmp_path: Path):
    # it was "c.yaml:3: model.heads.True.num_clases" (Python's True, at the line of heads:)
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n  heads:\n    yes: {name: linear, num_clases: 3}\n"
    )
    err = error_of(config)
    assert err.problems[1:] == [
        "model.heads.yes.num_clases: unknown key; did you mean 'num_classes'?"
    ]
    assert err.problems[0].startswith("model.heads.yes: a head's name is text")
    assert err.locations == [f"{config}:4", f"{config}:4"]
    # beside a named head, one without its name: a TypeError of difflib
    config.write_text("model:\n  heads:\n    cls: {name: linear}\n    on: {num_classes: 3}\n")
    assert error_of(config).problems[1:] == [
        "model.heads.on.name: required; the registered head to build"
    ]


def test_a_boolean_key_in_a_list_item_of_a_section_is_named_as_written(tmp_path: Path):
    # it was "logger.0.true" (not the key the file writes, and not a list item's path)
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "logger:\n  - {name: csv, On: 1}\n"
    )
    err = error_of(config)
    assert err.problems == [
        "logger[0].On: a key here is text, but YAML reads On as a boolean: write it in quotes "
        "('On': ...)"
    ]
    assert err.locations == [f"{config}:6"]


def test_a_number_key_whose_value_is_wrong_is_named_as_a_key_on_both_lines(tmp_path: Path):
    # the value's problem was "optimizer.param_groups[1]: expected a mapping" (a list item)
    config = tmp_path / "c.yaml"
    config.write_text(GROUP_CONFIG + "    1: 2\n")
    err = error_of(config)
    assert [p.partition(":")[0] for p in err.problems] == ["optimizer.param_groups.1"] * 2
    assert err.problems[1] == "optimizer.param_groups.1: expected a mapping, got 2"
    assert err.locations == [f"{config}:7"] * 2


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"half": True}, "half (--half)"),
        ({"tta": "flip", "bf16": True}, "tta and bf16 (--tta, --bf16)"),
    ],
)
def test_options_an_onnx_file_cannot_take_are_arguments_of_the_call(tmp_path: Path, given, named):
    # predict_files("m.onnx", ..., half=True) was headed "invalid command-line option: --half"
    # in a library call, as device errors were before
    from PIL import Image

    from visionkit.inference.predict import predict_files

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    onnx = tmp_path / "m.onnx"  # refused before the file is read
    with pytest.raises(ConfigError) as info:
        predict_files(onnx, [tmp_path / "a.png"], tmp_path / "out", **given)
    text = str(info.value)
    assert text == (
        f"invalid argument of predict_files():\n  {named}: an ONNX file runs on the CPU in "
        "float32 through onnxruntime, without test-time augmentation or galleries; give the "
        "checkpoint (.ckpt) it was exported from for these"
    )


def test_visionkit_predict_of_an_onnx_file_still_names_the_option(tmp_path: Path, capsys):
    from PIL import Image

    from visionkit.cli import main

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    args = ["--checkpoint", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "a.png")]
    assert main(["predict", *args, "--output-dir", str(tmp_path / "out"), "--tta", "flip"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: invalid command-line option:\n  tta (--tta): an ONNX file runs on the CPU"
    )


@pytest.mark.parametrize(
    ("steps", "key", "problem"),
    [
        ("[{name: HorizontalFlip, On: 1}]", "train[0].On", "YAML reads On as a boolean"),
        ("[{name: HorizontalFlip, 1: 1}]", "train[0].1", "YAML reads 1 as a number"),
        (  # inside a composition, where the schema (a list of mappings) does not look
            "[{name: OneOf, transforms: [{name: HorizontalFlip, off: 1}]}]",
            "train[0].transforms[0].off",
            "YAML reads off as a boolean",
        ),
        (
            "[{name: OneOf, yes: 1, transforms: [{name: Blur}]}]",
            "train[0].yes",
            "YAML reads yes as a boolean",
        ),
    ],
)
def test_a_key_of_a_transform_step_that_is_not_text_is_a_config_error(
    tmp_path: Path, steps, key, problem
):
    # a TypeError of difflib ("'bool' object is not iterable"), not a config error
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "data:\n  transforms:\n"
        f"    train: {steps}\n"
    )
    err = error_of(config)
    assert err.problems == [
        f"data.transforms.{key}: a key here is text, but {problem}: write it in quotes "
        f"('{key.rpartition('.')[2]}': ...)"
    ]
    assert err.locations == [f"{config}:7"]


def test_check_data_refuses_the_class_count_train_refuses(tmp_path: Path, capsys):
    # check-data --config found "no problems" in a config that train refused at once
    from PIL import Image

    from visionkit.cli import main

    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16)).save(tmp_path / "train" / cls / f"{i}.png")
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n  heads:\n    cls: {name: linear, num_classes: 3}\n"
        f"data:\n  train: {{format: folder, root: {tmp_path / 'train'}}}\n"
    )
    problem = (
        "model.heads.cls.num_classes: 3, but the data has 2 classes (cat, dog); set 2, or null "
        "to take it from the data"
    )
    assert main(["check-data", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert "check-data: " in out  # the datasets' report first
    assert err.startswith(f"error: invalid configuration in {config}:\n  {config}:4: {problem}")
    # set on the command line: said so, as train says it
    assert main(["check-data", "--config", str(config), "model.heads.cls.num_classes=4"]) == 2
    err = capsys.readouterr().err
    assert "\n  model.heads.cls.num_classes: 4, but the data has 2 classes" in err
    assert "(set on the command line, not in the file: model.heads.cls.num_classes=4)" in err
    # right, or left to the data: no problem
    config.write_text(config.read_text().replace("num_classes: 3", "num_classes: 2"))
    assert main(["check-data", "--config", str(config)]) == 0


def test_a_boolean_key_under_a_key_of_several_types_has_no_type_name_in_its_path():
    # trainer.compile takes true or a mapping: the path was trainer.compile.dict[str,any].true
    problems = error_of(MINIMAL, ["trainer.compile={On: 1}"]).problems
    assert (
        "trainer.compile.On: a key here is text, but YAML reads On as a boolean: write it in "
        "quotes ('On': ...)"
    ) in problems, problems
