"""The options of ``python tools/benchmark.py``: settings from options, recipes by name or path,
the baseline's own options, errors as messages."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from benchmarks.cli import Options, build_parser, main, options_from_args, settings_from_options
from benchmarks.harness import Settings, resolve_precision_name
from benchmarks.recipes import DEFAULT_RECIPES, REPO_ROOT, case_for_recipe
from benchmarks.suite import command_line
from visionkit.errors import ConfigError


def test_settings_quick_defaults_and_explicit_options():
    quick = settings_from_options(Options(quick=True, precision="fp32", reps=2))
    assert quick.image_size == (128, 128) and quick.batch_size == 4
    assert quick.infer_batch_sizes == (1, 4)
    assert quick.reps == 2  # explicit beats --quick
    assert quick.measure == ("models",) and quick.peak_sizes == (2048,)
    assert settings_from_options(Options(quick=True, precision="fp32")).reps == 7
    full = settings_from_options(Options(precision="bf16", image_size=[96]))
    assert full.image_size == (96, 96) and full.reps == 5
    assert full.batch_size is None  # each recipe's data.batch_size
    assert full.measure == ("models", "pipeline", "coco-eval")
    assert case_for_recipe("classify_r18", full).batch_size == 32
    assert case_for_recipe("fcos_r18", full).batch_size == 8
    chosen = settings_from_options(
        Options(
            precision="fp32",
            quick=True,
            measure=["coco-eval", "models"],
            coco_eval_size=[10, 2, 5],
            coco_eval_reps=1,
            pipeline_workers=0,
        )
    )
    assert chosen.measure == ("coco-eval", "models")
    assert (chosen.coco_images, chosen.coco_objects, chosen.coco_dets) == (10, 2, 5)
    assert chosen.coco_reps == 1 and chosen.pipeline_workers == 0
    with pytest.raises(ConfigError, match="measure"):
        settings_from_options(Options(precision="fp32", measure=["speed"]))
    with pytest.raises(ConfigError, match="coco-eval-size"):
        settings_from_options(Options(precision="fp32", coco_eval_size=[10, 2]))
    assert resolve_precision_name("auto") in ("fp32", "bf16")
    with pytest.raises(ConfigError):
        settings_from_options(Options(precision="fp32", warmup=0))
    with pytest.raises(ConfigError, match="image-size"):
        settings_from_options(Options(precision="fp32", image_size=[64, 64, 64]))


def test_unknown_recipe_is_a_config_error(capsys):
    assert main(["--recipes", "no_such_recipe", "--reps", "1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_recipe" in err and "fcos_r18" in err


def test_instance_recipe_has_no_case():
    with pytest.raises(ConfigError, match="no benchmark case"):
        case_for_recipe("instance_r18", Settings())


def test_cli_parses_the_baseline_options_into_settings_and_the_command():
    argv = ["--precision", "bf16", "--baseline-precision", "fp32"]
    args = build_parser().parse_args([*argv, "--baseline-image-size", "256"])
    assert args.baseline_precision == "fp32" and args.baseline_image_size == [256]
    args = build_parser().parse_args(["--baseline-image-size", "48", "64"])
    assert args.baseline_image_size == [48, 64] and args.baseline_precision is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--baseline-precision", "fp16"])

    settings = settings_from_options(
        Options(precision="bf16", quick=True, baseline_precision="fp32", baseline_image_size=[256])
    )
    assert settings.precision == "bf16" and settings.baseline_precision == "fp32"
    assert settings.image_size == (128, 128)  # --quick's, for ours only
    assert settings.baseline_image_size == (256, 256)
    command = command_line(["fcos_r18"], settings)
    assert "--precision bf16" in command and "--image-size 128 128" in command
    assert "--baseline-precision fp32 --baseline-image-size 256 256" in command
    # neither given: the command is as before, the baseline at ours
    plain = settings_from_options(Options(precision="fp32", image_size=[96]))
    assert plain.baseline_precision is None and plain.baseline_image_size is None
    assert "baseline" not in command_line(["fcos_r18"], plain)
    auto = settings_from_options(Options(precision="fp32", baseline_precision="auto"))
    assert auto.baseline_precision in ("fp32", "bf16")
    with pytest.raises(ConfigError, match="baseline-image-size"):
        settings_from_options(Options(precision="fp32", baseline_image_size=[16]))
    with pytest.raises(ConfigError, match="baseline-image-size"):
        settings_from_options(Options(precision="fp32", baseline_image_size=[1, 2, 3]))


def test_every_option_reaches_the_options_and_no_recipes_means_the_defaults():
    args = build_parser().parse_args(["--quick", "--check-floors", "floors.json"])
    options = options_from_args(args)
    assert options.quick and options.check_floors == "floors.json"
    assert list(options.recipes) == list(DEFAULT_RECIPES) and options.precision == "auto"
    # each field of Options is an option of the parser, and nothing else is
    option_fields = {f.name for f in fields(Options)}
    parsed = set(vars(build_parser().parse_args([])))
    assert parsed - {"debug"} == option_fields
    argv = ["--recipes", "fcos_r18", "x.yaml", "--coco-eval-size", "1", "2", "3"]
    options = options_from_args(build_parser().parse_args(argv))
    assert options.recipes == ["fcos_r18", "x.yaml"] and options.coco_eval_size == [1, 2, 3]


def test_shipped_recipes_are_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    case = case_for_recipe("fcos_r18", Settings())
    assert Path(case.recipe) == REPO_ROOT / "configs" / "shapes" / "fcos_r18.yaml"
    assert case.image_size == (160, 160)  # read through the config loader: the recipe's size
    with pytest.raises(ConfigError, match="nor a shipped recipe"):
        case_for_recipe("configs/shapes/fcos_r18.yaml", Settings())  # a path is relative to cwd


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["tools/benchmark.py"], "usage: tools/benchmark.py "),
        (["-m", "benchmarks"], "usage: tools/benchmark.py "),
        (["tools/bench_ddp.py"], "usage: tools/bench_ddp.py "),
    ],
)
def test_the_tools_run_from_a_checkout(argv, usage, tmp_path):
    """``python tools/benchmark.py`` and ``tools/bench_ddp.py`` run from any directory (they put
    the repository root on ``sys.path``); ``python -m benchmarks`` from the root."""
    script = [str(REPO_ROOT / argv[0])] if argv[0].startswith("tools/") else argv
    result = subprocess.run(
        [sys.executable, *script, "--help"],
        cwd=REPO_ROOT if argv[0] == "-m" else tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(usage)


def test_the_package_holds_no_benchmark_code():
    """The benchmarks live beside the package: nothing of them in ``visionkit/``, which never
    reads files of the repository checkout."""
    package = REPO_ROOT / "visionkit"
    assert not list(package.glob("bench*"))
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "REPO_ROOT" not in text, path
        assert not re.search(r"__file__\)(\.resolve\(\))?\.(parents\b|parent\.parent)", text), path
