"""Configs as users write them wrong in their first hour: each mistake gets a precise error
(what, where, what was expected), or the value the user meant."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from visionkit.config import load_config
from visionkit.errors import ConfigError

HEADS = "  heads:\n    cls: {name: linear, num_classes: 4}\n"
MINIMAL = {"model": {"backbone": {"name": "simple_cnn"}, "heads": {"cls": {"name": "linear"}}}}


def problems_of(source, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return info.value.problems


def test_exponent_floats_without_a_dot_are_floats_where_no_schema_types_them(tmp_path: Path):
    # PyYAML (YAML 1.1) reads 1e-1 as the string '1e-1': backbone kwargs reached timm as text
    # (TypeError deep inside resnet's make_blocks), a transform's argument likewise
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: resnet18, kwargs: {drop_path_rate: 1e-1}}\n"
        + HEADS
        + "data:\n  transforms:\n    train: [{name: HorizontalFlip, p: 5e-1}]\n"
        + "optimizer: {lr: 3E-4}\n"
    )
    cfg = load_config(config)
    assert cfg.model.backbone.kwargs == {"drop_path_rate": 0.1}
    assert cfg.data.transforms.train[0]["p"] == 0.5
    assert cfg.optimizer.lr == 0.0003
    cfg = load_config(config, ["model.backbone.kwargs.drop_path_rate=2e-1"])  # overrides too
    assert cfg.model.backbone.kwargs == {"drop_path_rate": 0.2}


def test_problems_name_the_file_and_line_that_write_the_key(tmp_path: Path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.yaml").write_text(
        "data:\n  train:\n    format: coco\n    imags: photos\n  transforms:\n"
        "    train:\n      - {name: HorizontalFlip, prob: 0.5}\n"
    )
    config = tmp_path / "recipe.yaml"
    config.write_text(
        "base: base/b.yaml\nmodel:\n  backbone: {name: simple_cnn}\n"
        + HEADS
        + "trainer:\n  max_epoch: 3\noptimizer:\n  lr: -1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config, ["optimizer.lr=-2"])
    lines = str(info.value).splitlines()
    base = tmp_path / "base" / "b.yaml"
    starts = (
        f"  {config}:7: trainer.max_epoch: unknown key; did you mean 'max_epochs'?",
        f"  {base}:4: data.train.imags: unknown key; did you mean 'images'?",
        f"  {base}:7: data.transforms.train[0].prob: unknown parameter of HorizontalFlip; valid: p",
        "  optimizer.lr: expected greater than 0, got -2",  # set on the command line: no line
    )
    for start in starts:
        assert any(line.startswith(start) for line in lines), (start, lines)
    # the problems themselves stay "key.path: what" for code that reads them
    problems = dict(zip(info.value.problems, info.value.locations, strict=True))
    assert problems["data.train.imags: unknown key; did you mean 'images'?"] == f"{base}:4"
    assert problems["optimizer.lr: expected greater than 0, got -2"] is None


def test_a_dataset_path_beside_the_config_but_not_in_the_current_folder_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    project = tmp_path / "project"
    (project / "shapes" / "images").mkdir(parents=True)
    config = project / "train.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n"
        + HEADS
        + "data:\n  train: {format: folder, root: shapes/images}\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("project/train.yaml")
    assert info.value.problems == [
        f"data.train.root: shapes/images is not in the current folder {tmp_path}, but is "
        "beside the config file: project/shapes/images; paths in a config are relative to the "
        "folder the command runs in, not to the config's: write root: project/shapes/images, "
        "give it with data.train.root=project/shapes/images, or run the command in project"
    ]
    assert info.value.locations == ["project/train.yaml:6"]
    # run where the config was written for, the same file reads
    monkeypatch.chdir(project)
    assert load_config("train.yaml").data.train["root"] == "shapes/images"


def test_an_override_written_as_yaml_that_is_not_valid_yaml_says_so():
    # was kept as text: "model.heads.cls: expected a mapping such as {name: {name: mlp, ...}"
    problems = problems_of(
        MINIMAL,
        [
            "model.heads.cls={name: mlp, num_classes: 3",
            "data.image_size=[64, 96",
            "data.train={format: coco, images: ${DATA}/x}",
        ],
    )
    assert problems[0].startswith(
        "model.heads.cls: '{name: mlp, num_classes: 3' is not a valid YAML mapping (expected "
        "',' or '}', but got '<stream end>' at character 27); write it as in a YAML file"
    )
    assert problems[1].startswith("data.image_size: '[64, 96' is not a valid YAML list")
    assert problems[2].endswith(
        "${...} is not expanded here: the shell expands $NAME within double quotes"
    )
    assert len(problems) == 3


def test_an_environment_variable_in_a_dataset_path_of_a_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATA", str(tmp_path))
    (tmp_path / "photos").mkdir()
    config = tmp_path / "train.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n"
        + HEADS
        + "data:\n  train: {format: folder, root: $DATA/photos}\n"
    )
    with pytest.raises(ConfigError) as info:  # was: "dataset root $DATA/photos does not exist"
        load_config(config)
    assert info.value.problems == [
        "data.train.root: $DATA/photos does not exist; environment variables are not expanded "
        "in a config file: write the path, or give it on the command line, where the shell "
        'expands them: data.train.root="$DATA/photos"'
    ]
    assert load_config(config, [f"data.train.root={tmp_path}/photos"]).data.train["root"]


@pytest.mark.parametrize("given", [[32], "64,64", "(64, 64)", [64, "x"]])
def test_a_wrong_image_size_is_one_line_saying_both_forms(given):
    # was "expected a valid integer, got [32]" and "data.image_size.1: required key is missing"
    assert problems_of({**MINIMAL, "data": {"image_size": given}}) == [
        "data.image_size: expected a positive int or [height, width], e.g. 128 or [96, 128], "
        f"got {given!r}"
    ]


def test_max_time_as_a_bare_number_asks_for_a_unit_and_fractions_of_units_are_taken():
    # was "expected a valid string, got 10; ... write the value in quotes", and '10' failed too
    assert problems_of(MINIMAL, ["trainer.max_time=10"]) == [
        "trainer.max_time: expected a time with its unit: 'DD:HH:MM:SS' ('00:00:10:00' is ten "
        "minutes) or a mapping of days, hours, minutes, seconds ({minutes: 10}), got 10"
    ]
    # as Lightning's Timer takes it (timedelta(**value)); was "expected a valid string"
    cfg = load_config(MINIMAL, ["trainer.max_time={hours: 0.5}"])
    assert cfg.trainer.max_time == {"hours": 0.5}
    assert load_config(MINIMAL, ["trainer.max_time={minutes: 10}"]).trainer.max_time == {
        "minutes": 10
    }


@pytest.mark.parametrize(
    ("name", "kwargs", "error"),
    [
        ("resnet18", {"drop_path_rate": "abc"}, "TypeError: unsupported operand"),
        ("resnet18", {"layers": [1]}, "ZeroDivisionError"),
        ("torchvision/resnet18", {"norm_layer": 3}, "TypeError"),
    ],
)
def test_a_backbone_argument_of_the_wrong_type_or_range_is_named_not_a_traceback(
    name, kwargs, error
):
    from visionkit.models.backbones import create_backbone
    from visionkit.models.backbones.base import BackboneError

    # was the library's own TypeError / ZeroDivisionError, a traceback from deep inside it
    with pytest.raises(BackboneError) as info:
        create_backbone(name, **kwargs)
    message = str(info.value)
    assert message.startswith(f"model.backbone.kwargs: {name} cannot be built with {kwargs} (")
    assert error in message
    assert message.endswith("check each value's type and range")


def test_ultralytics_training_arguments_are_told_the_keys_to_use():
    # time=0.5 was "time: unknown key; did you mean 'optimizer'?"; cos_lr, lrf, mosaic listed
    # every top-level key
    problems = problems_of(MINIMAL, ["time=0.5", "cos_lr=False", "lrf=0.01", "mosaic=1.0"])
    assert problems == [
        "time: unknown key; for Ultralytics' time, use trainer.max_time with its unit: time=0.5 "
        "(hours) is trainer.max_time='{hours: 0.5}'",
        # cos_lr=False (Ultralytics' default, a linear decay) was told scheduler.name=cosine
        "cos_lr: unknown key; for Ultralytics' cos_lr, use scheduler.name (cosine, the default "
        "here, for cos_lr=True; there is no linear decay, Ultralytics' cos_lr=False: the others "
        "are step, onecycle and constant)",
        "lrf: unknown key; for Ultralytics' lrf, use scheduler.min_lr_factor",
        "mosaic: unknown key; for Ultralytics' mosaic, use a first step {name: Mosaic, p: 1.0} "
        "of data.transforms.train",
    ]
    # and what they say is taken
    assert load_config(MINIMAL, ["trainer.max_time={hours: 0.5}"]).trainer.max_time == {
        "hours": 0.5
    }


def test_days_hours_minutes_seconds_are_a_time_not_a_number_in_base_60(tmp_path: Path):
    # YAML 1.1 read 10:00:00:00 as 2160000 (base 60): "expected a time ..., got 2160000"
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "trainer:\n  max_time: 10:00:00:00\n"
    )
    assert load_config(config).trainer.max_time == "10:00:00:00"
    assert load_config(config, ["trainer.max_time=1:00:00:00"]).trainer.max_time == "1:00:00:00"


def test_a_folder_given_as_the_config_lists_its_yaml_files(tmp_path: Path):
    (tmp_path / "b.yaml").write_text("name: b\n")
    (tmp_path / "a.yml").write_text("name: a\n")
    (tmp_path / "notes.txt").write_text("")
    # was "cannot read config file: Is a directory"
    assert problems_of(tmp_path) == [
        "cannot read config file: Is a directory; give one of its YAML files: a.yml, b.yaml"
    ]


def test_a_transform_given_by_its_name_alone_is_shown_as_a_mapping():
    # was "expected a mapping, got 'HorizontalFlip'"
    problems = problems_of(MINIMAL, ["data.transforms.train=[HorizontalFlip]"])
    assert problems[0] == (
        "data.transforms.train[0]: expected a mapping such as {name: HorizontalFlip}, "
        "got 'HorizontalFlip'"
    )


def test_a_config_written_back_reads_back_the_same(tmp_path: Path):
    import yaml

    from visionkit.config import load_yaml, save_config, to_yaml

    # name=1e-3 was written bare (name: 1e-3, YAML 1.1's text), which the loader reads as
    # 0.001: "name: expected a valid string, got 0.001" on --config of the printed file
    cfg = load_config(MINIMAL, ["name=1e-3", "model.backbone.kwargs={tag: '1e5'}"])
    text = to_yaml(cfg)
    assert "name: '1e-3'" in text
    assert load_yaml(text) == yaml.safe_load(text) == cfg.to_dict()
    save_config(cfg, tmp_path / "printed.yaml")
    again = load_config(tmp_path / "printed.yaml")
    assert (again.name, again.model.backbone.kwargs) == ("1e-3", {"tag": "1e5"})


def test_numbers_written_bare_where_text_is_expected_stay_text(tmp_path: Path):
    from visionkit.engine.run_folder import edited_config_note

    # as earlier versions wrote a run folder's config.yaml: name: 1e-3 was "expected a valid
    # string, got 0.001", class names [1e5, 2e5] the floats 100000.0 and 200000.0
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    data = {"train": {"format": "folder", "root": str(tmp_path), "class_names": ["1e5", "2e5"]}}
    (run / "config.yaml").write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "name: 1e-3\ndata:\n  train:\n"
        f"    format: folder\n    root: {tmp_path}\n    class_names: [1e5, 2e5]\n"
    )
    cfg = load_config(run / "config.yaml")
    assert (cfg.name, cfg.data.train["class_names"]) == ("1e-3", ["1e5", "2e5"])
    saved = {**MINIMAL, "data": data}  # the checkpoint's: the same data
    assert edited_config_note(run / "checkpoints" / "last.ckpt", saved) is None
    # an override of list items, as of a whole value (name=007)
    names = ["data.train.format=folder", f"data.train.root={run}"]
    cfg = load_config(MINIMAL, [*names, "data.train.class_names=[1e5, 2e5]"])
    assert cfg.data.train["class_names"] == ["1e5", "2e5"]
    assert load_config(MINIMAL, ["optimizer.lr=1e-3"]).optimizer.lr == 0.001  # a number


def test_a_base_files_kept_text_never_replaces_the_number_a_config_writes(tmp_path: Path):
    # a base's text of a number was applied to the value the config itself writes there:
    # name: 2024 over a base's name: 1e-3 was the run '1e-3', class names [1e6, 7] over
    # [1e5, 2e5] were ['1e6', '2e5']; the config's own numbers are its own (and 2024, 7,
    # which earlier versions never wrote bare, are told to be quoted, as without a base)
    (tmp_path / "base.yaml").write_text(
        "model:\n  backbone: {name: simple_cnn}\n" + HEADS + "name: 1e-3\ndata:\n  train:\n"
        f"    format: folder\n    root: {tmp_path}\n    class_names: [1e5, 2e5]\n"
    )
    (tmp_path / "own.yaml").write_text(
        "base: base.yaml\ndata:\n  train:\n    class_names: [1e6, 2e6]\n"
    )
    cfg = load_config(tmp_path / "own.yaml")
    assert (cfg.name, cfg.data.train["class_names"]) == ("1e-3", ["1e6", "2e6"])
    (tmp_path / "main.yaml").write_text("base: base.yaml\nname: 2024\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "main.yaml")
    assert "name: expected a valid string, got 2024" in str(err.value)
    (tmp_path / "items.yaml").write_text(
        "base: base.yaml\ndata:\n  train:\n    class_names: [1e6, 7]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "items.yaml")
    assert "data.train.class_names[1]: expected a valid string, got 7" in str(err.value)


@pytest.mark.parametrize("key", ["data.train.class_names.0", "data.train.class_names[0]"])
def test_an_override_of_a_text_list_item_is_text_in_either_form(key, tmp_path: Path):
    # class_names.0=1e5 was "expected a valid string, got 100000.0" where class_names[0]=1e5
    # was the class '1e5'; both forms are documented
    names = ["data.train.format=folder", f"data.train.root={tmp_path}"]
    cfg = load_config(MINIMAL, [*names, "data.train.class_names=[a, b]", f"{key}=1e5"])
    assert cfg.data.train["class_names"] == ["1e5", "b"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e5", 1e5), ("1.0e5", 1e5), ("-.5", -0.5), ("1_000.5", 1000.5), ("1_0e1", "1_0e1")],
)
def test_exponents_are_read_as_yaml_1_2_reads_them(text, value):
    from visionkit.config import load_yaml

    # YAML 1.2's core schema takes no "_" in a number: 1_0e1 and 1__0e1 were 100.0
    assert load_yaml(f"x: {text}") == {"x": value}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010", 10),
        ("-010", -10),
        ("0_10", 10),
        ("08", 8),
        ("0o17", 15),
        ("0x10", 16),
        ("0x_", "0x_"),
    ],
)
def test_leading_zeros_are_decimal_as_the_docs_say(text, value, tmp_path: Path):
    from visionkit.config import load_yaml

    # YAML 1.1 read 010 as octal 8 (and 08 as text), in files and overrides alike
    assert load_yaml(f"x: {text}") == {"x": value}
    if isinstance(value, int):
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(MINIMAL) + f"seed: {text}\n")
        assert load_config(tmp_path / "run.yaml").seed == value
        assert load_config(MINIMAL, [f"seed={text}"]).seed == value


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("name=[ablation]lr", "name", "[ablation]lr"),
        ("name={date}-run", "name", "{date}-run"),
        ("data.train.root=[2023] photos", "root", "[2023] photos"),
    ],
)
def test_an_override_of_text_starting_with_a_bracket_is_that_text(
    override, key, value, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # was "name: '[ablation]lr' is not a valid YAML list (...)", as before the check it is text
    monkeypatch.chdir(tmp_path)
    (tmp_path / "[2023] photos").mkdir()
    data = {"train": {"format": "folder", "root": "."}}
    cfg = load_config({**MINIMAL, "data": data}, [override])
    assert (cfg.data.train if key == "root" else vars(cfg))[key] == value


def test_a_base_of_a_config_in_a_linked_folder_is_named_where_it_is_merged_from(tmp_path: Path):
    (tmp_path / "real" / "a").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a").symlink_to(tmp_path / "real" / "a")
    (tmp_path / "real" / "b.yaml").write_text("trainer:\n  max_epoch: 3\n")
    (tmp_path / "other" / "b.yaml").write_text("# never merged\n\n\n\ntrainer:\n  max_epoch: 3\n")
    (tmp_path / "real" / "a" / "cfg.yaml").write_text(
        "base: ../b.yaml\nmodel:\n  backbone: {name: simple_cnn}\n" + HEADS
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "other" / "a" / "cfg.yaml")
    # was other/b.yaml:6, a file that is not merged ("other/a/.." collapsed as text)
    assert info.value.locations == [f"{(tmp_path / 'real' / 'b.yaml').resolve()}:2"]


def test_a_problem_with_an_item_the_file_leaves_out_is_placed_at_its_key(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  backbone: {name: simple_cnn}\n"
        + HEADS
        + "optimizer:\n  name: adamw\n  betas: [0.9]\n"
    )
    with pytest.raises(ConfigError) as info:  # was no file:line
        load_config(config)
    assert info.value.problems == ["optimizer.betas[1]: required key is missing"]
    assert info.value.locations == [f"{config}:7"]  # betas: [0.9]


def test_an_image_size_with_a_height_of_zero_is_one_line():
    # was "expected a positive int or [height, width], ..., got [0, 64]" (which it is) and
    # "data.image_size.0: expected greater than 0, got 0"
    assert problems_of({**MINIMAL, "data": {"image_size": [0, 64]}}) == [
        "data.image_size: expected [height, width] whose height is greater than 0, got [0, 64]"
    ]


def test_a_dataset_path_from_the_command_line_is_told_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "project" / "photos").mkdir(parents=True)
    config = tmp_path / "project" / "train.yaml"
    config.write_text("model:\n  backbone: {name: simple_cnn}\n" + HEADS)
    monkeypatch.chdir(tmp_path)
    # 'data.train.root=$DATA/photos', single-quoted: was "not expanded in a config file"
    given = ["data.train.format=folder", "data.train.root=$DATA/photos"]
    assert problems_of(config, given)[0] == (
        "data.train.root: $DATA/photos does not exist; the shell expands environment variables "
        'within double quotes, not single ones, and visionkit does not: give data.train.root="'
        '$DATA/photos"'
    )
    # was "paths in a config are relative ...: write root: project/photos, ..."
    given = ["data.train.format=folder", "data.train.root=photos"]
    assert problems_of(config, given)[0] == (
        f"data.train.root: photos is not in the current folder {tmp_path}, but is beside the "
        f"config file: {tmp_path}/project/photos; paths on the command line are relative to the "
        "folder the command runs in, not to the config's: give it with "
        f"data.train.root={tmp_path}/project/photos, or run the command in {tmp_path}/project"
    )


def test_every_error_names_a_list_item_in_brackets_as_overrides_take_it():
    # one error said "data.transforms.train.1" (pydantic's path) beside "train[0].prob"
    overrides = [
        "data.transforms.train=[{name: HorizontalFlip, prob: 1}, 3]",
        "optimizer.betas=[0.9]",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(MINIMAL, overrides)
    assert sorted(p.partition(":")[0] for p in info.value.problems) == [
        "data.transforms.train[0].prob",
        "data.transforms.train[1]",
        "optimizer.betas[1]",
    ]
    fixed = [f"data.transforms.train[{i}]={{name: HorizontalFlip}}" for i in (0, 1)]
    assert load_config(MINIMAL, [*overrides, *fixed, "optimizer.betas=[0.9, 0.99]"])


@pytest.mark.parametrize(
    ("override", "optimizer", "scheduler"),
    [
        ("optimizer={name: SGD}", "sgd", "cosine"),
        ("optimizer.name=AdamW", "adamw", "cosine"),
        ("scheduler.name=OneCycle", "adamw", "onecycle"),
        # torch's class names of the same schedules (the docs said names were taken "as torch
        # writes them", and OneCycleLR was refused)
        ("scheduler.name=OneCycleLR", "adamw", "onecycle"),
        ("scheduler.name=CosineAnnealingLR", "adamw", "cosine"),
        ("scheduler.name=MultiStepLR", "adamw", "step"),
    ],
)
def test_optimizer_and_scheduler_names_are_taken_in_any_case(override, optimizer, scheduler):
    # optimizer: SGD was told to write {name: SGD}, which was then refused for its case
    cfg = load_config(MINIMAL, [override])
    assert (cfg.optimizer.name, cfg.scheduler.name) == (optimizer, scheduler)
    assert problems_of_overrides(["optimizer.name=Lion"]) == [
        "optimizer.name: expected 'sgd', 'adamw' or 'adam' (in any case), got 'Lion'"
    ]
    for other in ("StepLR", "ConstantLR"):  # torch's schedules of these names are others
        assert problems_of_overrides([f"scheduler.name={other}"]) == [
            "scheduler.name: expected 'cosine', 'step', 'onecycle' or 'constant' (also written "
            f"'CosineAnnealingLR', 'MultiStepLR', 'OneCycleLR'; in any case), got '{other}'"
        ]


def problems_of_overrides(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(MINIMAL, overrides)
    return info.value.problems


def test_an_error_is_headed_a_command_line_option_s_only_where_raised_as_one(capsys):
    # the heading was guessed from a leading "--": a config problem naming --resume was
    # "invalid command-line option", and an option error not starting with "--" was not
    from tests.helpers import run
    from visionkit.build.data import split_spec
    from visionkit.data.split_shares import split_counts

    assert str(ConfigError("--resume x: data.image_size=96 ...")).startswith(
        "invalid configuration"
    )
    with pytest.raises(ConfigError, match="^invalid command-line option:\n  --val 0"):
        split_counts(10, 0.0)
    with pytest.raises(ConfigError, match="^invalid command-line option:\n  --split"):
        split_spec(None, "tset")
    code, _, err = run(["check-data"], capsys)
    assert code == 2 and "error: invalid command-line option:\n  give --config X.yaml" in err
