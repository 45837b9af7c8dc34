"""Config loading: base merging, overrides, validation errors with full key paths."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from visionkit.config import apply_overrides, deep_merge, load_config
from visionkit.engine.runner import evaluate
from visionkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {
    "model": {
        "backbone": {"name": "simple_cnn"},
        "heads": {"cls": {"name": "linear", "num_classes": 3}},
    },
}


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def problems_of(source, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return info.value.problems


def test_defaults_are_filled_from_schemas_and_builders():
    cfg = load_config(MINIMAL)
    assert cfg.trainer.max_epochs == 10
    assert cfg.model.heads["cls"] == {
        "name": "linear",
        "num_classes": 3,
        "hidden_dims": [],
        "dropout": 0.0,
        "level": -1,
        "label_smoothing": 0.0,
        "class_weights": None,
        "loss_weight": 1.0,
    }


def test_misspelt_key_names_full_path_and_nearest_key():
    bad = {"model": {"backbone": {"nmae": "resnet18"}, "heads": MINIMAL["model"]["heads"]}}
    assert problems_of(bad) == ["model.backbone.nmae: unknown key; did you mean 'name'?"]


def test_misspelt_key_in_head_arguments_uses_builder_signature():
    bad = {
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"cls": {"name": "linear", "num_classes": 3, "dropuot": 0.1}},
        }
    }
    assert problems_of(bad) == ["model.heads.cls.dropuot: unknown key; did you mean 'dropout'?"]


def test_wrong_type_names_key_expected_type_and_value():
    (line,) = problems_of(MINIMAL, ["trainer.max_epochs=ten"])
    assert line.startswith("trainer.max_epochs: expected a valid integer")
    assert "'ten'" in line
    # pydantic's "got a number with a fractional part" was followed by a second "got 64.5"
    (line,) = problems_of(MINIMAL, ["data.image_size=64.5"])
    assert line == "data.image_size: expected a whole number, got 64.5"


def test_every_problem_is_reported_at_once():
    problems = problems_of(MINIMAL, ["trainer.max_epoch=3", "optimizer.lr=-1", "data.batch_size=0"])
    assert len(problems) == 3
    assert any(
        p.startswith("trainer.max_epoch: unknown key; did you mean 'max_epochs'?") for p in problems
    )
    assert any(p.startswith("optimizer.lr:") for p in problems)
    assert any(p.startswith("data.batch_size:") for p in problems)


@pytest.mark.parametrize(
    ("override", "line"),
    [
        # a section's key written at the top level was "did you mean 'optimizer'?" / a key list
        ("image_size=64", "image_size: unknown key; did you mean data.image_size? (a key of data:)"),
        ("max_epochs=3", "max_epochs: unknown key; did you mean trainer.max_epochs? (a key of trainer:)"),
        ("lr=0.1", "lr: unknown key; did you mean optimizer.lr? (a key of optimizer:)"),
        # ... or in another section, or in a head or neck
        ("trainer.batch_size=8", "trainer.batch_size: unknown key; did you mean data.batch_size? (a key of data:)"),
        ("trainer.seed=1", "trainer.seed: unknown key; did you mean seed? (a key of the top level)"),
        ("model.heads.cls.lr=0.1", "model.heads.cls.lr: unknown key; did you mean optimizer.lr? (a key of optimizer:)"),
        ("warmup_steps=5", "warmup_steps: unknown key; did you mean scheduler.warmup_steps or ema.warmup_steps?"),
    ],
)  # fmt: skip
def test_a_key_in_the_wrong_section_names_where_it_belongs(override, line):
    assert problems_of(MINIMAL, [override]) == [line]


@pytest.mark.parametrize("key", ["_base_", "defaults", "extends"])
def test_another_tools_name_of_base_suggests_base(tmp_path, key):
    write(tmp_path / "base.yaml", MINIMAL)
    child = write(tmp_path / "child.yaml", {key: "base.yaml", "name": "child"})
    problems = problems_of(child)
    assert problems[0].startswith(f"{key}: unknown key; did you mean 'base'? (a config file")


@pytest.mark.parametrize(
    ("override", "line"),
    [
        # was "expected a valid dictionary or instance of BackboneConfig, got 'resnet18'"
        ("model.backbone=resnet18", "model.backbone: expected a mapping such as {name: resnet18}, got 'resnet18'"),
        ("optimizer=sgd", "optimizer: expected a mapping such as {name: sgd}, got 'sgd'"),
        # was said twice, in other words: "expected a valid dictionary" and "expected a mapping, got str"
        ("model.heads.cls=mlp", "model.heads.cls: expected a mapping such as {name: mlp}, got 'mlp'"),
        ("data.train=photos", "data.train: expected a mapping such as {format: folder, root: photos} (formats: docs/datasets.md), got 'photos'"),
        ("data.transforms=null", "data.transforms: expected a mapping, got None"),
    ],
)  # fmt: skip
def test_a_value_where_a_mapping_belongs_says_mapping_with_an_example(override, line):
    assert problems_of(MINIMAL, [override]) == [line]


def test_unknown_head_name_suggests_registered_names():
    (line,) = problems_of({"model": {"heads": {"cls": {"name": "linaer"}}}})
    assert line.startswith("model.heads.cls.name: unknown head 'linaer'; did you mean 'linear'")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("val", "val/... is what the logs call the validation totals"),
        ("time", "time/... is what the logs call the run's timings"),
        ("train", "train/... is what the logs call the training losses"),  # was a KeyError
        ("keys", "a method of the modules that hold the heads"),
        ("a.b", "letters, digits and _ only"),  # was torch's KeyError
        ("det/x", "letters, digits and _ only"),
        ("2det", "not starting with a digit"),
    ],
)
def test_a_head_name_the_logs_or_modules_cannot_take_is_refused(name, why):
    heads = {"cls": {"name": "linear", "num_classes": 3}, name: {"name": "linear"}}
    (line,) = problems_of({"model": {"heads": heads}})
    assert line.startswith(f"model.heads.{name}: cannot name a head: ")
    assert why in line and line.endswith("; use another, e.g. det, seg, cls")


def test_head_names_of_letters_digits_and_underscores_pass():
    heads = {name: {"name": "linear", "num_classes": 2} for name in ("det_2", "Seg", "_aux")}
    assert list(load_config({"model": {"heads": heads}}).model.heads) == ["det_2", "Seg", "_aux"]


def test_unknown_dataset_format_and_wrong_dataset_argument():
    problems = problems_of(
        {
            **MINIMAL,
            "data": {
                "train": {"format": "cocoo"},
                "val": {"format": "coco", "annotation": "a.json"},
            },
        }
    )
    assert any(
        p.startswith("data.train.format: unknown dataset 'cocoo'; did you mean 'coco'")
        for p in problems
    )
    assert "data.val.annotation: unknown key; did you mean 'annotations'?" in problems


def test_base_is_merged_beneath_and_overrides_on_top(tmp_path):
    write(
        tmp_path / "base.yaml", {**MINIMAL, "trainer": {"max_epochs": 7, "precision": "bf16-mixed"}}
    )
    write(tmp_path / "child.yaml", {"base": "base.yaml", "trainer": {"max_epochs": 9}})
    cfg = load_config(
        tmp_path / "child.yaml", ["model.backbone.name=resnet34", "data.batch_size=4"]
    )
    assert cfg.trainer.max_epochs == 9
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.model.backbone.name == "resnet34"
    assert cfg.data.batch_size == 4


def test_base_list_merges_in_order(tmp_path):
    write(tmp_path / "a.yaml", {**MINIMAL, "seed": 1, "name": "a"})
    write(tmp_path / "b.yaml", {"seed": 2})
    write(tmp_path / "c.yaml", {"base": ["a.yaml", "b.yaml"]})
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.seed, cfg.name) == (2, "a")


def test_only_one_level_of_base(tmp_path):
    write(tmp_path / "a.yaml", MINIMAL)
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    write(tmp_path / "c.yaml", {"base": "b.yaml"})
    (line,) = problems_of(tmp_path / "c.yaml")
    assert "only one level of base" in line


def test_a_missing_base_is_told_of_the_file_naming_it(tmp_path, monkeypatch):
    """It was "invalid configuration in <the missing file>: cannot read config file", not
    saying which file named it, nor that a base is relative to that file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs" / "custom").mkdir(parents=True)
    write(tmp_path / "configs" / "base.yaml", MINIMAL)
    child = write(tmp_path / "configs" / "custom" / "mine.yaml", {"base": "configs/base.yaml"})
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert info.value.source == str(child)
    missing = tmp_path / "configs" / "custom" / "configs" / "base.yaml"
    assert info.value.problems == [
        f"base: configs/base.yaml: there is no file {missing} (a base is relative to the folder "
        "of the file naming it); configs/base.yaml is a file from the current folder: write "
        "base: ../base.yaml"
    ]


def test_one_override_string_is_one_override_not_its_characters(tmp_path):
    assert apply_overrides({}, "a.b=3") == {"a": {"b": 3}}
    with pytest.raises(ConfigError, match=re.escape("'model.x=1': eval accepts data.*")):
        evaluate(tmp_path / "none.ckpt", "model.x=1")  # checked before the checkpoint is read


def test_overrides_from_python_may_be_a_mapping_and_keys_may_have_spaces(tmp_path):
    """A dict was read as its keys, each 'expected an override of the form key.path=value';
    'data.train.root = x' was an unknown key 'data.train.root ' (the space unseen)."""
    given = {"data.train": {"format": "folder", "root": tmp_path}, "data.batch_size": 4}
    data = apply_overrides({}, given)
    assert data == {"data": {"train": {"format": "folder", "root": str(tmp_path)}, "batch_size": 4}}
    assert apply_overrides({}, ["a.b = text", "a.c =3"]) == {"a": {"b": "text", "c": 3}}


def test_a_head_set_to_null_is_dropped_as_a_dataset_is():
    """It was "expected a valid dictionary, got None", then the same again in other words."""
    base = {
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"cls": {"name": "linear", "num_classes": 2}, "b": {"name": "linear"}},
        }
    }
    cfg = load_config(base, ["model.heads.b=null"])
    assert list(cfg.model.heads) == ["cls"]
    with pytest.raises(ConfigError) as err:
        load_config(base, ["model.heads.b=null", "model.heads.cls=null"])
    assert err.value.problems == ["model.heads: at least one head is required"]


def test_override_values_are_yaml_typed():
    data = apply_overrides({}, ["a.b=3", "a.c=0.5", "a.d=null", "a.e=[1, 2]", "a.f=text"])
    assert data == {"a": {"b": 3, "c": 0.5, "d": None, "e": [1, 2], "f": "text"}}


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ("name=123", "name", "123"),
        ("name=007", "name", "007"),  # as written, not 7
        ("name=2024-05-01", "name", "2024-05-01"),  # not a date
        ("output_dir=2024", "output_dir", "2024"),
        ("resume=12.50", "resume", "12.50"),
        ("name=off", "name", "off"),  # YAML 1.1's false
    ],
)
def test_a_number_given_to_a_text_key_on_the_command_line_is_its_text(override, key, text):
    assert getattr(load_config(MINIMAL, [override]), key) == text


def test_a_number_stays_a_number_where_the_key_is_not_only_text():
    photos = {**MINIMAL, "data": {"train": {"format": "folder", "root": "photos"}}}
    cfg = load_config(photos, ["seed=007", "trainer.devices=1", "data.train.root=2024"])
    assert (cfg.seed, cfg.trainer.devices, cfg.data.train["root"]) == (7, 1, "2024")
    assert problems_of(MINIMAL, ["name=null"]) == ["name: expected a valid string, got None"]


def test_a_number_written_in_a_file_where_text_belongs_says_to_quote_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + "name: 007\noutput_dir: 2024-05-01\nresume: no\n")
    quote = "write the value in quotes (on the command line inside the argument: 'KEY=\"VALUE\"')"
    assert problems_of(path) == [
        f"name: expected a valid string, got 7; YAML reads it as a number: for text, {quote}",
        "output_dir: expected a valid string, got datetime.date(2024, 5, 1); YAML reads it as "
        f"a date: for text, {quote}",
        "resume: expected a valid string, got False; YAML reads it as a boolean (yes, no, on, "
        f"off, true, false): for text, {quote}",
    ]


def test_an_override_names_a_list_item_by_its_index():
    data = {"data": {"transforms": {"train": [{"name": "A"}, {"name": "B", "p": 0.5}]}}}
    out = apply_overrides(data, ["data.transforms.train[1].p=0.2", "data.transforms.train.0.p=1"])
    assert out["data"]["transforms"]["train"] == [{"name": "A", "p": 1}, {"name": "B", "p": 0.2}]
    assert data["data"]["transforms"]["train"][1]["p"] == 0.5  # the input is not changed


def test_an_override_of_an_item_of_a_list_left_at_its_default_changes_the_default():
    cfg = load_config(MINIMAL, ["optimizer.betas.1=0.99"])
    assert cfg.optimizer.betas == (0.9, 0.99)
    cfg = load_config(MINIMAL, ["model.heads.cls.name=mlp", "model.heads.cls.hidden_dims[0]=64"])
    assert cfg.model.heads["cls"]["hidden_dims"] == [64]  # the mlp variant's (512,), changed
    # read against the components the overrides name in the end, whatever their order
    cfg = load_config(MINIMAL, ["model.heads.cls.hidden_dims[0]=64", "model.heads.cls.name=mlp"])
    assert cfg.model.heads["cls"]["hidden_dims"] == [64]
    data = apply_overrides(
        {"data": {"train": {"format": "coco", "images": "x"}}},
        ["data.train.root=007", "data.train.format=folder"],
    )
    assert data["data"]["train"]["root"] == "007"
    assert problems_of(MINIMAL, ["model.heads.cls.hidden_dims.0=64"]) == [
        "model.heads.cls.hidden_dims: has no items, so 'model.heads.cls.hidden_dims.0' names "
        "none (give the whole list)"  # linear's default: []
    ]


def test_an_override_of_a_yaml_alias_changes_only_the_key_it_names(tmp_path):
    path = tmp_path / "aliased.yaml"
    path.write_text(
        "model: {backbone: {name: simple_cnn}, heads: {cls: {name: linear, num_classes: 2}}}\n"
        "data:\n  train: &set {format: folder, root: photos, split: train}\n  val: *set\n"
    )
    cfg = load_config(path, ["data.val.split=val"])
    assert (cfg.data.train["split"], cfg.data.val["split"]) == ("train", "val")
    steps = [{"name": "Resize", "height": 64}]
    out = apply_overrides({"t": {"train": steps, "val": steps}}, ["t.val[0].height=32"])
    assert (out["t"]["train"][0]["height"], out["t"]["val"][0]["height"]) == (64, 32)


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("data.transforms.train[2].p=1", "data.transforms.train: has 2 items (0..1), cannot set"),
        ("data.transforms.train.p=1", "data.transforms.train: is a list, cannot set"),
        ("data.image_size[0]=3", "data.image_size: is not a list, cannot set"),
        ("data.transforms.val[0].p=1", "data.transforms.val: not set, so"),
        ("data.transforms.val.0.p=1", "data.transforms.val: not set, so"),  # not a key "0"
        ("data.transforms.test.2.p=1", "data.transforms.test: not set, so"),
        ("data.image_size.0=3", "data.image_size: is not a list, cannot set"),
        ("data.train[x]=1", "expected an override of the form key.path=value"),
    ],
)
def test_an_override_of_a_list_item_that_is_not_there_says_why(override, problem):
    data = {
        "data": {
            "image_size": 128,
            "transforms": {"train": [{"name": "A"}, {"name": "B"}], "val": None},
        }
    }
    with pytest.raises(ConfigError, match=re.escape(problem)):
        apply_overrides(data, [override])


def test_malformed_override_is_a_config_error():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["trainer.max_epochs"])


@pytest.mark.parametrize(
    ("overrides", "problems"),
    [
        # Lightning's "--trainer.max_epochs 3" without the dashes: two arguments
        (
            ["trainer.max_epochs", "3", "data.batch_size", "4"],
            [
                "'trainer.max_epochs' '3': expected an override of the form key.path=value; "
                "did you mean trainer.max_epochs=3?",
                "'data.batch_size' '4': expected an override of the form key.path=value; "
                "did you mean data.batch_size=4?",
            ],
        ),
        # YAML's "key: value"
        (
            ["name: my run", "noequals"],
            [
                "'name: my run': expected an override of the form key.path=value; "
                "did you mean 'name=my run'?",
                "'noequals': expected an override of the form key.path=value",
            ],
        ),
        # "trainer.max_epochs: 3" split by the shell; a key followed by the next key path
        (
            ["trainer.max_epochs:", "3", "trainer.fast_dev_run", "trainer.precision", "32"],
            [
                "'trainer.max_epochs:' '3': expected an override of the form key.path=value; "
                "did you mean trainer.max_epochs=3?",
                "'trainer.fast_dev_run': expected an override of the form key.path=value",
                "'trainer.precision' '32': expected an override of the form key.path=value; "
                "did you mean trainer.precision=32?",
            ],
        ),
    ],
)
def test_an_override_without_equals_says_what_was_meant(overrides, problems):
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, overrides)
    assert info.value.problems == problems


def test_deep_merge_replaces_non_mappings():
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(tmp_path / "bad.yaml")
    assert f'in "{tmp_path / "bad.yaml"}", line 1' in str(info.value)  # not "<unicode string>"


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    """PyYAML keeps the last of two ``trainer:`` sections: max_epochs: 3 was dropped silently."""
    text = (
        yaml.safe_dump(MINIMAL)
        + "trainer:\n  max_epochs: 3\nseed: 1\ntrainer:\n  precision: 32-true\n"
    )
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    (line,) = problems_of(path)
    assert "found 'trainer' a second time (first on line 8)" in line
    assert f'in "{path}", line 11' in line


def test_keys_a_yaml_merge_brings_in_may_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        "model:\n  backbone: {name: simple_cnn}\n  heads:\n"
        "    cls: &head {name: linear, num_classes: 2}\n    cls2: {<<: *head, num_classes: 3}\n"
    )
    assert load_config(path).model.heads["cls2"]["num_classes"] == 3
    # a merged mapping that overrides a merge of its own, merged again (PyYAML flattens the
    # inner node in place: a check after flattening saw lr twice)
    path.write_text(
        "defs:\n  base: &base {lr: 0.1}\n  fast: &fast {<<: *base, lr: 0.5}\n"
        "optimizer: {<<: *fast, name: sgd}\n"
    )
    import yaml

    from visionkit.config.files import read_yaml

    assert read_yaml(path) == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_an_empty_config_file_says_so(tmp_path, text):
    """It was "model.heads: at least one head is required"."""
    (tmp_path / "empty.yaml").write_text(text)
    (line,) = problems_of(tmp_path / "empty.yaml")
    assert line.startswith("the file is empty (or holds only comments)")
    # overrides may fill it, and an empty base adds nothing (both worked before)
    cfg = load_config(
        tmp_path / "empty.yaml", ["model.heads.cls.name=linear", "model.heads.cls.num_classes=2"]
    )
    assert list(cfg.model.heads) == ["cls"]
    (tmp_path / "top.yaml").write_text(
        "base: empty.yaml\nmodel: {heads: {cls: {name: linear, num_classes: 2}}}\n"
    )
    assert list(load_config(tmp_path / "top.yaml").model.heads) == ["cls"]


def test_a_tab_in_the_yaml_says_yaml_indents_with_spaces(tmp_path):
    (tmp_path / "tab.yaml").write_text("model:\n\tbackbone: {name: simple_cnn}\n")
    (line,) = problems_of(tmp_path / "tab.yaml")
    assert line.endswith("; YAML indents with spaces, never tabs")


def test_a_misspelt_config_name_suggests_the_closest_config_beside_it():
    with pytest.raises(ConfigError, match="did you mean configs/custom/detect_fcos_r18.yaml"):
        load_config("configs/custom/detect_fcos_r81.yaml")


def test_a_missing_config_names_the_folder_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user's own folder, not the clone
    with pytest.raises(ConfigError) as info:
        load_config("configs/custom/detect_fcos_r18.yaml")
    assert info.value.problems == [
        f"cannot read config file: No such file or directory (read from the current folder "
        f"{tmp_path}); visionkit's recipes are in the configs/ folder of its repository: run "
        "the command there, or give the recipe's full path"
    ]
    with pytest.raises(ConfigError) as info:
        load_config("my_recipe.yaml")
    assert info.value.problems == [
        f"cannot read config file: No such file or directory (read from the current folder "
        f"{tmp_path})"
    ]


def test_yaml_tags_that_would_run_code_are_refused(tmp_path):
    (tmp_path / "evil.yaml").write_text("model: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("!!int abc", "'abc' is not an integer, as its tag !!int asks"),
        ("!!int 0x", "'0x' is not an integer, as its tag !!int asks"),
        ("!!float abc", "'abc' is not a number, as its tag !!float asks"),
        ("!!bool maybe", "'maybe' is not true or false, as its tag !!bool asks"),
        ("2024-13-01", "'2024-13-01' is not a date (2024-01-31) or a time (2024-01-31 10:00:00): "),
    ],
)
def test_a_value_its_tag_cannot_read_is_a_yaml_error_with_its_line(tmp_path, value, said):
    # seed: !!int abc was a ValueError traceback from inside PyYAML
    path = tmp_path / "tagged.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + f"seed: {value}\n")
    (line,) = problems_of(path)
    assert line.startswith(f"not valid YAML: {said}")
    lines = len(path.read_text().splitlines())
    assert f'in "{path}", line {lines}, column 7' in line


@pytest.mark.parametrize(
    "config",
    sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "configs").rglob("*.yaml")
        if p.parent.name != "base"
    ),
)
def test_shipped_configs_validate(config):
    overrides = []
    if "folder" in config:
        overrides = ["data.train.root=x", "data.val.root=y"]
    load_config(ROOT / config, overrides)


def test_cli_exits_2_with_key_path_on_unknown_key(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train.py"),
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            "model.backbone.nmae=resnet18",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "model.backbone.nmae: unknown key; did you mean 'name'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_print_config_shows_resolved_values():
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train.py"),
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--print-config",
            "trainer.max_epochs=2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["trainer"]["max_epochs"] == 2
    assert printed["data"]["train"]["class_field"] == "background"
    assert printed["model"]["heads"]["cls"]["loss_weight"] == 0.1  # from the recipe
    assert printed["model"]["heads"]["det"]["loss_weight"] == 1.0  # the default, filled in
    assert printed["data"]["transforms"]["val"] == [{"name": "Resize", "height": 128, "width": 128}]


def test_unknown_backbone_is_a_config_error_with_suggestions():
    bad = {"model": {"backbone": {"name": "resnet19"}, "heads": MINIMAL["model"]["heads"]}}
    (line,) = problems_of(bad)
    assert line.startswith("model.backbone.name: unknown backbone 'resnet19'; did you mean")
    assert "'resnet18'" in line


def test_section_and_component_errors_are_reported_together():
    problems = problems_of(MINIMAL, ["trainer.max_epochs=ten", "model.heads.cls.dropuot=0.1"])
    assert len(problems) == 2
    assert any(p.startswith("trainer.max_epochs:") for p in problems)
    assert "model.heads.cls.dropuot: unknown key; did you mean 'dropout'?" in problems


def test_dataset_class_names_can_be_set_and_precision_accepts_numbers():
    cfg = load_config(
        MINIMAL,
        [
            "data.val.format=folder",
            "data.val.root=x",
            "data.val.class_names=[a, b]",
            "trainer.precision=32",
        ],
    )
    assert cfg.data.val["class_names"] == ["a", "b"]
    assert cfg.trainer.precision == "32"


@pytest.mark.parametrize(
    "config",
    sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "configs").rglob("*.yaml")
        if p.parent.name != "base"
    ),
)
def test_shipped_configs_build_an_untrained_model(config):
    import visionkit

    needs_data = config.startswith(("configs/coco", "configs/custom", "configs/mask_folder"))
    label_names = (
        {
            "class": ["a", "b"],
            "instances": ["x", "y", "z"],
            "semantic": ["bg", "x", "y", "z"],
            "identity": ["p", "q"],
        }
        if needs_data  # num_classes: null, taken from the data
        else None
    )
    # the recipes for photos start from downloaded weights; tests never download
    cfg = load_config(ROOT / config, ["model.backbone.pretrained=false"])
    if cfg.model.init_from:  # torchvision's COCO weights: the mapping has its own tests
        cfg.model.init_from = None
    model = visionkit.create_model(cfg, label_names=label_names)
    assert model.heads


def test_a_recipe_without_its_dataset_path_says_which_key_to_set(tmp_path):
    from visionkit.engine.runner import train

    with pytest.raises(ConfigError) as info:
        train(ROOT / "configs" / "custom" / "classify_r18.yaml", output_dir=tmp_path / "run")
    assert info.value.problems == [  # both splits at once
        "data.train.root: not set; give the dataset folder, e.g. data.train.root=PATH",
        "data.val.root: not set; give the dataset folder, e.g. data.val.root=PATH (one folder, "
        "not split yet: visionkit split DIR --val 0.2 holds out a share of it and says how to "
        "read each part; data.val=null trains without validation)",
    ]
    assert not (tmp_path / "run").exists()


def test_one_folder_of_photos_without_a_validation_folder_is_told_how_to_hold_out_a_share(
    tmp_path,
):
    """A first run with only data.train.root: the error says how to split the folder (or
    train without validation), rather than only to give a folder the user does not have."""
    from visionkit.engine.runner import train

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "pets" / name / "a.jpg")
    with pytest.raises(ConfigError) as info:
        train(
            ROOT / "configs" / "custom" / "classify_r18.yaml",
            [f"data.train.root={tmp_path / 'pets'}", "model.backbone.pretrained=false"],
            output_dir=tmp_path / "run",
        )
    (problem,) = info.value.problems
    assert problem.startswith("data.val.root: not set; give the dataset folder")
    assert "visionkit split DIR --val 0.2" in problem
    assert "data.val=null trains without validation" in problem


def test_a_coco_entry_without_validation_images_is_told_to_split_its_json(tmp_path):
    """A COCO entry's unset data.val.images was told ``visionkit split DIR --val 0.2``, which
    splits a folder; a COCO dataset is split by its json."""
    from tests.helpers import make_coco
    from visionkit.build.data import build_datasets

    data = make_coco(tmp_path)
    recipe = ROOT / "configs" / "custom" / "instance_r18.yaml"
    overrides = [f"data.train.images={data}", f"data.train.annotations={data}/annotations.json"]
    with pytest.raises(ConfigError) as info:
        build_datasets(load_config(recipe, overrides).data)
    (problem,) = info.value.problems
    assert problem.startswith("data.val.images: not set; give the dataset folder")
    assert (
        "(one COCO json, not split yet: visionkit split ANNOTATIONS.json --val 0.2 writes one "
        "json per part and says how to read each part; data.val=null trains without validation)"
    ) in problem
    assert "split DIR" not in problem


def test_augmentation_mistakes_are_config_errors_with_their_index():
    problems = problems_of(
        MINIMAL,
        [
            "data.transforms.train=[{name: HorizontalFlp}, {name: Resize, height: 3, widht: 3}, {name: HorizontalFlip, p: 2}]"
        ],
    )
    assert problems == [
        "data.transforms.train[0].name: unknown albumentations transform 'HorizontalFlp'; did you mean 'HorizontalFlip'?",
        "data.transforms.train[1].widht: unknown parameter of Resize; did you mean 'width'?",
        "data.transforms.train[2].p (HorizontalFlip): expected a number from 0 to 1, got 2",
    ]


def test_a_sizing_transform_without_its_size_follows_data_image_size():
    recipe = ROOT / "configs" / "shapes" / "fcos_r18.yaml"
    assert yaml.safe_load(recipe.read_text())["data"]["transforms"]["val"] == [{"name": "Resize"}]
    cfg = load_config(recipe)
    size = cfg.data.image_size
    assert cfg.data.transforms.val == [{"name": "Resize", "height": size, "width": size}]
    # one override moves every Resize of the recipe
    cfg = load_config(recipe, ["data.image_size=[96,128]"])
    assert cfg.data.transforms.train[0] == {"name": "Resize", "height": 96, "width": 128}
    assert cfg.data.transforms.val[0] == {"name": "Resize", "height": 96, "width": 128}
    # a size given in the step wins; `size`-style transforms are filled too
    steps = [
        {"name": "RandomResizedCrop", "scale": [0.5, 1.0]},
        {"name": "CenterCrop", "height": 40, "width": 40},
        {"name": "HorizontalFlip"},
    ]
    cfg = load_config(
        {
            "model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}},
            "data": {"image_size": 64, "transforms": {"train": steps}},
        }
    )
    assert cfg.data.transforms.train[0]["size"] == [64, 64]
    assert cfg.data.transforms.train[1] == {"name": "CenterCrop", "height": 40, "width": 40}
    assert cfg.data.transforms.train[2] == {"name": "HorizontalFlip"}


def test_a_bad_image_size_is_reported_without_follow_up_errors_about_the_steps():
    recipe = ROOT / "configs" / "shapes" / "fcos_r18.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(recipe, ["data.image_size=-3"])
    *problems, note = info.value.problems
    assert problems
    assert all(p.startswith("data.image_size") for p in problems), problems
    assert any("greater than 0" in p for p in problems)
    assert note == "(set on the command line, not in the file: data.image_size=-3)"


def test_a_mistake_on_the_command_line_is_told_from_one_in_the_file(tmp_path):
    """The error names the config file; a typo given as an override says it came from the
    command line, and a mistake in the file alone gets no such line."""
    recipe = ROOT / "configs" / "shapes" / "fcos_r18.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(recipe, ["trainer.max_step=30", "data.batch_size=4"])
    assert str(recipe) in str(info.value)
    assert info.value.problems[0].startswith("trainer.max_step: unknown key")
    assert info.value.problems[-1] == (
        "(set on the command line, not in the file: trainer.max_step=30)"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace("max_steps:", "max_step:"))
    with pytest.raises(ConfigError) as info:
        load_config(bad, ["data.batch_size=4"])
    assert not any("command line" in p for p in info.value.problems)


@pytest.mark.parametrize(
    "override",
    [
        "data.transforms.train=[{name: Resise}]",
        "data.transforms.train[0].name=Resise",
        "data.transforms.train.0.name=Resise",
    ],
)
def test_a_transform_set_on_the_command_line_is_told_so(tmp_path, override):
    """The problem's path names a list item (train[0]), which the override's key did not
    match, so the error read as if the file were wrong."""
    path = write(
        tmp_path / "c.yaml",
        {**MINIMAL, "data": {"transforms": {"train": [{"name": "HorizontalFlip"}]}}},
    )
    problems = problems_of(path, [override])
    assert problems[0].startswith("data.transforms.train[0].name: unknown albumentations")
    assert problems[-1] == f"(set on the command line, not in the file: {override})"


def test_a_path_starting_with_tilde_is_under_the_home_folder(monkeypatch, tmp_path):
    """``output_dir: ~/runs`` made a folder named ``~`` in the current one, and
    ``root: ~/photos`` was read from there too; torchvision expands ``~`` in dataset roots."""
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(
        MINIMAL,
        [
            "output_dir=~/runs",
            "resume=~/runs/x/checkpoints/last.ckpt",
            "data.train={format: folder, root: ~/photos/train}",
            "data.val={pets: {format: coco, images: ~/pets, annotations: ~/pets/val.json}}",
        ],
    )
    assert cfg.output_dir == str(tmp_path / "runs")
    assert cfg.resume == str(tmp_path / "runs/x/checkpoints/last.ckpt")
    assert cfg.data.train["root"] == str(tmp_path / "photos/train")
    assert cfg.data.val["pets"]["images"] == str(tmp_path / "pets")
    assert cfg.data.val["pets"]["annotations"] == str(tmp_path / "pets/val.json")


def test_trainer_precision_is_checked_against_lightning():
    """An unknown precision is a ConfigError at load time, not a Lightning ValueError later;
    the accepted list is Lightning's own, plus ``auto``."""
    import typing

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    from visionkit.config.schema import PRECISIONS

    lightning_values = {
        str(v) for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg)
    }
    assert set(PRECISIONS) == lightning_values | {"auto"}
    with pytest.raises(
        ConfigError,
        match=r"trainer\.precision: expected one of: auto, .* \(in any case\), got '33'",
    ):
        load_config(MINIMAL, ["trainer.precision=33"])
    assert load_config(MINIMAL, ["trainer.precision=32"]).trainer.precision == "32"


def test_changing_a_datasets_format_by_override_says_to_give_the_whole_entry():
    """The recipe's VOC keys (root, split) stay when only data.train.format changes: the
    unknown keys are the config's, and the message says how to replace the entry."""
    recipe = ROOT / "configs" / "custom" / "detect_fcos_r18.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(recipe, ["data.train.format=coco", "data.train.images=/data/photos"])
    problems = info.value.problems
    assert problems[0].startswith("data.train.root: unknown key")
    assert problems[-1] == (
        "data.train.format=coco: the override changes the format, and the other keys of "
        "data.train are still the config's; give the whole entry instead, e.g. "
        "data.train='{format: coco, ...}' (every key of the new format: docs/datasets.md)"
    )
    with pytest.raises(ConfigError) as info:  # one override given as a string, not a list
        load_config(recipe, "data.train.format=coco")
    assert info.value.problems[-1].startswith("data.train.format=coco: the override changes")
    whole = "data.train={format: coco, images: /data/photos}"
    assert load_config(recipe, [whole]).data.train["format"] == "coco"
    with pytest.raises(ConfigError) as info:  # other mistakes get no such line
        load_config(recipe, ["data.train.rot=/data"])
    assert not any("changes the format" in p for p in info.value.problems)


@pytest.mark.parametrize(
    ("override", "lines"),
    [
        # a misspelt head in an override was "model.heads.dett.name: required"
        (
            "model.heads.dett.num_convs=1",
            [
                "model.heads.dett: not a head of the config (its heads: cls, det, seg); did you "
                "mean model.heads.det? a new head needs its name: "
                "model.heads.dett.name=<registered head>"
            ],
        ),
        # pydantic's union member names stayed in the path: "data.image_size.constrained-int"
        ("data.image_size=-5", ["data.image_size: expected greater than 0, got -5"]),
        # a list of heads was also "at least one head is required"
        ("model.heads=[cls,det]", ["model.heads: expected a mapping, got ['cls', 'det']"]),
    ],
)
def test_an_override_error_is_one_line_in_the_users_terms(override, lines):
    with pytest.raises(ConfigError) as info:
        load_config(Path(__file__).parents[1] / "configs" / "quickstart.yaml", [override])
    assert str(info.value).splitlines()[1:-1] == [f"  {line}" for line in lines]


def test_a_named_dataset_set_to_null_leaves_the_mix():
    """``data.train.maps=null`` said "the other splits are mixes of named datasets ...; give
    data.train the same way, e.g. data.train.boxes.maps=..."."""

    def mix():
        return {
            "boxes": {"format": "voc", "root": "r"},
            "maps": {"format": "mask_folder", "root": "c"},
        }

    config = {
        "model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}},
        "data": {"train": mix(), "val": mix()},
    }
    cfg = load_config(config, ["data.train.maps=null"])
    assert list(cfg.data.train) == ["boxes"] and list(cfg.data.val) == ["boxes", "maps"]
    with pytest.raises(ConfigError, match="data.train: every named dataset was set to null"):
        load_config(config, ["data.train.maps=null", "data.train.boxes=null"])


def test_a_sampling_weight_on_one_dataset_says_it_is_a_key_of_a_mix():
    """It said "unknown key; valid keys: ..." without weight among them."""
    config = {
        "model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}},
        "data": {"train": {"format": "voc", "root": "r", "weight": 2}},
    }
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value).splitlines()[1:] == [
        "  data.train.weight: a sampling weight is a key of a dataset of a mix (data.train: "
        "{photos: {format: ..., weight: 2}, extra: {format: ...}}); one dataset fills every "
        "batch (docs/multitask.md)"
    ]


def test_a_sampling_weight_on_a_validation_mix_is_warned_of_and_left_out(caplog):
    """``weight:`` on ``data.val``'s datasets was accepted and did nothing (evaluation reads
    each set whole): a warning, not an error, since earlier versions' checkpoints hold such
    configs; the default 1.0, which they saved in config.yaml, says nothing."""
    mix = {
        "boxes": {"format": "voc", "root": "r", "weight": 3},
        "maps": {"format": "mask_folder", "root": "c"},
    }
    config = {
        "model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}},
        "data": {"train": mix, "val": mix},
    }
    with caplog.at_level("WARNING", logger="visionkit.config.validate"):
        cfg = load_config(config)
    assert [r.getMessage() for r in caplog.records] == [
        "data.val.boxes.weight: a sampling weight applies to data.train only (data.val reads "
        "every image of each of its datasets once); ignored"
    ]
    assert cfg.data.train["boxes"]["weight"] == 3.0
    assert "weight" not in cfg.data.val["boxes"] and "weight" not in cfg.data.val["maps"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="visionkit.config.validate"):
        load_config(config, ["data.val.boxes.weight=1.0"])
    assert not caplog.records
