"""Config mistakes left over by earlier sessions, each written as a user writes it (a YAML file
in a folder, or a command-line override): the error names the key path as the config writes
it, the file and line, what was expected, in visionkit's words (never pydantic's "Input
should be ...")."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionkit.config import load_config
from visionkit.errors import ConfigError

HEADS = "  heads:\n    cls: {name: linear, num_classes: 4}\n"


def error_of(source, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return info.value


def test_a_bad_transform_parameter_names_step_key_line_and_what_it_takes(tmp_path: Path):
    # it was "data.transforms.train[1].scale_limit.tuple[float, float]: Input should be a
    # valid tuple" and "....scale_limit.float: Input should be a valid number, unable to
    # parse string as a number": pydantic's words, a key path with type names in it
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n"
        + HEADS
        + "data:\n  transforms:\n    train:\n"
        + "      - {name: HorizontalFlip}\n"
        + "      - {name: RandomScale, scale_limit: abc}\n"
        + "      - {name: HorizontalFlip, p: high}\n"
        + "      - {name: Resize, height: 32, width: 32, interpolation: 9}\n"
        + "      - {name: OneOf, p: 2, transforms: [{name: Blur}]}\n"
        + "      - {name: MixUp, alpha: 0}\n"
    )
    err = error_of(config)
    assert err.problems == [
        "data.transforms.train[1].scale_limit (RandomScale): expected a number or a list of 2 "
        "numbers, got 'abc'",
        "data.transforms.train[2].p (HorizontalFlip): expected a number from 0 to 1, got 'high'",
        "data.transforms.train[3].interpolation (Resize): expected one of 0 nearest, 1 linear, "
        "2 cubic, 3 area, 4 lanczos4, 5 linear_exact, 6 nearest_exact, got 9",
        "data.transforms.train[4].p (OneOf): expected a number from 0 to 1, got 2",
        "data.transforms.train[5].alpha (MixUp): expected a number, above 0, got 0",
    ]
    assert err.locations == [f"{config}:{line}" for line in (9, 10, 11, 12, 13)]
    assert "Input should" not in str(err)


def test_an_integer_head_name_is_a_key_of_the_heads_not_a_list_item(tmp_path: Path):
    # it was "model.heads[0]: expected a valid string, got 0; ... write the value in quotes":
    # a list item's path, and quoting it gives a name no head may take (it starts with a digit)
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: {name: simple_cnn}\n  heads:\n    0: {name: linear}\n")
    err = error_of(config)
    assert err.problems == [
        "model.heads.0: a head's name is text (letters, digits and _, not starting with a "
        "digit); YAML reads 0 as a number; name the head after its task, e.g. det, seg, cls "
        "(its metrics are named so: det/mAP)"
    ]
    assert err.locations == [f"{config}:4"]
    # a head keyed true was "model.heads.1: ... YAML reads True as a boolean", at the heads' line
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n  heads:\n    true: {name: linear}\n"
    )
    err = error_of(config)
    assert err.problems[0].startswith("model.heads.true: a head's name is text")
    assert "YAML reads true as a boolean" in err.problems[0]
    assert err.locations == [f"{config}:4"]
    other = error_of(
        config, ["model.heads={cls: {name: linear}}", "optimizer.param_groups={1: {}}"]
    )
    assert other.problems[0] == (
        "optimizer.param_groups.1: a key here is text, but YAML reads 1 as a number: write it "
        "in quotes ('1': ...)"
    )
    # a union key's mapping form ({minutes: 10}) with a number key: its one line, no second
    # of pydantic's type names (trainer.max_time.dict[str,union[int,float]].1: ...)
    err = error_of(config, ["model.heads={cls: {name: linear}}", "trainer.max_time={1: 2}"])
    assert [p.split(":")[0] for p in err.problems if p.startswith("trainer")] == [
        "trainer.max_time"
    ]


def write_folder_data(root: Path, classes=("a", "b")) -> Path:
    """An ImageFolder of 2 tiny images per class."""
    import numpy as np
    from PIL import Image

    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


def test_out_indices_past_the_backbone_names_its_key_line_and_range(tmp_path: Path):
    # it was "cannot build timm backbone 'resnet18' with {'out_indices': (7,)}: list index out
    # of range (...)", without the config's file and line, and for simple_cnn "out_indices
    # (9,) out of range for backbone 'simple_cnn'" without the key
    from visionkit import create_model

    config = tmp_path / "c.yaml"
    for backbone, given, name in [
        ("simple_cnn", "[9]", "simple_cnn"),
        ("resnet18", "[7]", "resnet18"),
        ("resnet18", "[-9]", "resnet18"),
    ]:
        config.write_text(
            f"model:\n  backbone:\n    name: {backbone}\n    out_indices: {given}\n" + HEADS
        )
        with pytest.raises(ConfigError) as info:
            create_model(config)
        level = given.strip("[]")
        assert info.value.problems == [
            f"model.backbone.out_indices: {given} picks level {level}, which '{name}' does not "
            f"have; '{name}' has 5 feature levels, 0..4 (or -5..-1, counted from the last), at "
            "strides [2, 4, 8, 16, 32]; pick levels of increasing stride: e.g. [2, 3, 4] for "
            "strides 8, 16, 32"
        ]
        assert info.value.locations == [f"{config}:4"]
        assert str(info.value).startswith(f"invalid configuration in {config}:\n  {config}:4: ")
    config.write_text("model:\n  backbone: {name: simple_cnn, out_indices: [1, -4]}\n" + HEADS)
    with pytest.raises(ConfigError, match=r"out_indices: \[1, -4\] picks level 1 twice"):
        create_model(config)


def test_a_check_after_loading_names_the_file_and_line_of_its_key(tmp_path: Path, capsys):
    # num_classes against the data is checked once the data is read: it said
    # "invalid configuration:\n  model.heads.cls.num_classes: 3, but the data has 2 classes"
    # without the file, where every first-pass problem names FILE:LINE
    from visionkit.cli import main

    data = write_folder_data(tmp_path / "photos")
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n  heads:\n    cls:\n      name: linear\n"
        f"      num_classes: 3\ndata:\n  train: {{format: folder, root: {data}}}\n"
        f"output_dir: {tmp_path / 'runs'}\n"
    )
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: invalid configuration in {config}:\n  {config}:6: model.heads.cls.num_classes: "
        "3, but the data has 2 classes (a, b)"
    ), err
    # set on the command line: no line of the file is named
    assert main(["train", "--config", str(config), "model.heads.cls.num_classes=5"]) == 2
    err = capsys.readouterr().err
    assert "\n  model.heads.cls.num_classes: 5, but the data has 2" in err
    # and said so, as the loader's own errors of an override are
    assert "\n  (set on the command line, not in the file: model.heads.cls.num_classes=5)" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("written", "logger", "precision"),
    [
        ("logger: CSV\ntrainer: {precision: BF16-mixed}\n", ["csv"], "bf16-mixed"),
        ("logger: [TensorBoard]\ntrainer: {precision: 16-Mixed}\n", ["tensorboard"], "16-mixed"),
        ("logger: {name: MLflow}\ntrainer: {precision: 32-True}\n", ["mlflow"], "32-true"),
    ],
)
def test_logger_and_precision_names_are_taken_in_any_case(tmp_path, written, logger, precision):
    # they were refused for their case ("logger[0].name: expected 'csv', ..., got 'CSV'";
    # "unknown precision 'BF16-mixed'"), where optimizer: SGD and scheduler: OneCycleLR were not
    from visionkit.config import save_config

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: {name: simple_cnn}\n" + HEADS + written)
    cfg = load_config(config)
    assert [entry.name for entry in cfg.logger] == logger
    assert cfg.trainer.precision == precision
    save_config(cfg, tmp_path / "saved.yaml")  # the canonical names are what is saved
    saved = (tmp_path / "saved.yaml").read_text()
    assert f"precision: {precision}" in saved and f"name: {logger[0]}" in saved
    err = error_of(config, ["trainer.precision=fp8", "logger=Comet"])
    assert err.problems[:2] == [
        "trainer.precision: expected one of: auto, 64, 32, 16, bf16, 64-true, 32-true, 16-true, "
        "16-mixed, bf16-true, bf16-mixed, transformer-engine, transformer-engine-float16 (in "
        "any case), got 'fp8'",
        "logger[0].name: expected 'csv', 'tensorboard', 'wandb' or 'mlflow' (in any case), got 'Comet'",
    ]


def test_a_mapping_item_without_a_space_after_its_colon_is_told_so(tmp_path: Path):
    # YAML reads {format:coco,images:x} as two keys set to null: the user was told "data.train:
    # every named dataset was set to null; give at least one"
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: {name: simple_cnn}\n" + HEADS)
    err = error_of(config, ["data.train={format:coco,images:x}"])
    assert err.problems == [
        "data.train: YAML reads keys 'format:coco', 'images:x' without a value: an item of a "
        "mapping needs a space after its colon; write `format: coco` with a space after the "
        "colon, e.g. 'data.train={format: coco,images: x}'"
    ]
    err = error_of(config, ["data.transforms.train=[{name:HorizontalFlip}]"])
    assert "write `name: HorizontalFlip` with a space after the colon" in err.problems[0]
    # in a file alike, at its line
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "data:\n  train: {format:coco}\n"
    )
    err = error_of(config)
    assert err.problems == [
        "data.train: YAML reads the key 'format:coco' without a value: an item of a mapping "
        "needs a space after its colon; write `format: coco` with a space after the colon"
    ]
    assert err.locations == [f"{config}:6"]
    # one glued item beside spaced ones was "unknown key model.backbone.name:resnet18" /
    # "data.train.images:x: unknown key; did you mean 'images'?"
    config.write_text(
        "model:\n  backbone: {name:resnet18}\n"
        + HEADS
        + "data:\n  train: {format: coco, images:x}\n"
    )
    assert error_of(config).problems == [
        "model.backbone: YAML reads the key 'name:resnet18' without a value: an item of a "
        "mapping needs a space after its colon; write `name: resnet18` with a space after the "
        "colon",
        "data.train: YAML reads the key 'images:x' without a value: an item of a mapping "
        "needs a space after its colon; write `images: x` with a space after the colon",
    ]
    # block style: the whole value is text, which was told "{format: folder, root: format:coco}"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "data:\n  train: format:coco\n"
    )
    assert error_of(config).problems == [
        "data.train: expected a mapping such as {format: coco}: an item of a mapping needs a "
        "space after its colon, got 'format:coco'"
    ]
    # a time with colons is a value, not a glued item
    cfg = load_config(
        config, ["data.train={format: folder, root: x}", "trainer={max_time: 00:00:10:00}"]
    )
    assert cfg.trainer.max_time == "00:00:10:00"


def test_a_library_functions_bad_argument_is_headed_as_its_argument(tmp_path: Path, capsys):
    # model.predict(imgsz="big") said "invalid configuration: imgsz (--imgsz): ...", of a
    # config the call never had; visionkit predict --conf 3 said so too, of an option
    import numpy as np

    from visionkit import create_model
    from visionkit.cli import main
    from visionkit.engine.runner import train

    heads = {"cls": {"name": "linear", "num_classes": 2}}
    model = create_model({"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}})
    image = np.zeros((24, 24, 3), np.uint8)
    with pytest.raises(ConfigError) as info:
        model.predict(image, imgsz="big")
    assert str(info.value).startswith("invalid argument of predict():\n  imgsz (--imgsz): ")
    with pytest.raises(ConfigError, match=r"^invalid argument of predict\(\):\n  conf "):
        model.predict(image, conf=2, stream=True)
    config = {
        "model": {"backbone": {"name": "simple_cnn"}, "heads": {"cls": {"name": "linear"}}},
        "data": {"train": {"format": "folder", "root": str(write_folder_data(tmp_path / "d"))}},
    }
    with pytest.raises(ConfigError) as info:
        train(config, output_dir=tmp_path / "run", callbacks=[3])
    assert str(info.value) == (
        "invalid argument of train():\n"
        "  train(callbacks=...)[0]: expected a lightning.pytorch.Callback instance, got int"
    )
    # the command line that passes its options on heads them as options
    out = tmp_path / "predictions"
    code = main(
        ["predict", "--checkpoint", "none.ckpt", "--input", str(tmp_path / "d")]
        + ["--conf", "3", "--output-dir", str(out)]
    )
    assert code == 2
    assert capsys.readouterr().err.startswith(
        "error: invalid command-line option:\n  conf (--conf): a score threshold in [0, 1), got 3.0"
    )


def test_a_transform_steps_own_check_is_followed_by_what_it_takes_and_a_mapping_in_words(
    tmp_path: Path,
):
    # it was "std_range (GaussNoise): First value should be less than the second value, got
    # (0.5, 0.1) instead; expected a list of 2 numbers" (the value is one), a check's full
    # stop kept before the "; ", and Affine's translate_px "expected dict, a number, ..."
    import pydantic

    from visionkit.data.transform_params import describe, parameter_problems

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: {name: simple_cnn}\n" + HEADS)
    steps = "[{name: GaussNoise, std_range: [0.5, 0.1]}, {name: Affine, translate_px: abc}]"
    err = error_of(config, [f"data.transforms.train={steps}"])
    assert err.problems[:2] == [
        "data.transforms.train[0].std_range (GaussNoise): First value should be less than the "
        "second value, got (0.5, 0.1) instead; it takes a list of 2 numbers",
        "data.transforms.train[1].translate_px (Affine): expected a number, a list of 2 "
        "numbers, a mapping ({x: ..., y: ...}) or null, got 'abc'",
    ]
    assert describe(dict[str, int]) == "a mapping ({x: ..., y: ...})"

    class Step(pydantic.BaseModel):
        size: int

        @pydantic.field_validator("size")
        @classmethod
        def _even(cls, value: int) -> int:
            raise ValueError("size must be even.")

    with pytest.raises(pydantic.ValidationError) as info:
        Step(size=3)
    fields = Step.model_fields
    assert parameter_problems(info.value, fields, "Step", "t[0]", {"size": 3}) == [
        "t[0].size (Step): size must be even; it takes a whole number"
    ]


def test_someof_with_n_not_a_number_is_a_config_error(tmp_path: Path):
    # it was a TypeError ('>' not supported between 'str' and 'int') from the n-vs-steps check
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone: {name: simple_cnn}\n" + HEADS)
    err = error_of(
        config, ["data.transforms.train=[{name: SomeOf, n: x, transforms: [{name: Blur}]}]"]
    )
    assert err.problems[0] == (
        "data.transforms.train[0].n (SomeOf): expected a whole number, above 0, got 'x'"
    )
