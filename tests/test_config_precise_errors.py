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
    other = error_of(
        config, ["model.heads={cls: {name: linear}}", "optimizer.param_groups={1: {}}"]
    )
    assert other.problems[0] == (
        "optimizer.param_groups.1: a key here is text, but YAML reads 1 as a number: write it "
        "in quotes ('1': ...)"
    )
