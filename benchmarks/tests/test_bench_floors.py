"""The CI guard: floors files, the check of a run's ratios against them, and the refusal of
runs whose baseline ran at other settings."""

from __future__ import annotations

import copy
import json

import pytest

from benchmarks.cli import Options, main, settings_from_options
from benchmarks.floors import check_floors, read_floors
from benchmarks.harness import Settings
from benchmarks.recipes import DEFAULT_RECIPES, REPO_ROOT, case_for_recipe
from benchmarks.report import write_json
from benchmarks.tests.conftest import differing_results, fake_results
from visionkit.errors import ConfigError


def test_check_floors_exits_1_below_the_floor_and_0_above(tmp_path, floors_file, capsys):
    low, high = tmp_path / "low.json", tmp_path / "high.json"
    write_json(low, fake_results(train_ratio=1.1))
    write_json(high, fake_results(train_ratio=1.3))

    assert main(["--from-json", str(low), "--check-floors", str(floors_file)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert (
        "detection/fcos_r18: train_images_per_s ours/baseline = 1.10, below the floor 1.20" in out
    )
    assert "detection/retinanet_r18: not measured in this run" in out

    assert main(["--from-json", str(high), "--check-floors", str(floors_file)]) == 0
    out = capsys.readouterr().out
    assert "all met" in out and "FAILED" not in out


def test_check_floors_function_and_bad_floor_files(tmp_path):
    results = fake_results(train_ratio=0.9)
    failures, notes = check_floors(results, {"detection/fcos_r18": {"train_images_per_s": 1.0}})
    assert len(failures) == 1 and not notes
    assert check_floors(results, {"detection/fcos_r18": {"train_images_per_s": 0.8}}) == (
        [],
        [],
    )
    missing = copy.deepcopy(results)
    del missing["sections"]["detection"][0]["ratios"]["train_images_per_s"]
    failures, _ = check_floors(missing, {"detection/fcos_r18": {"train_images_per_s": 1}})
    assert failures == ["detection/fcos_r18: ratio train_images_per_s missing from the results"]

    # a floor on a lower-is-better ratio (ms/image) or a non-number is a config error
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"floors": {"detection/fcos_r18": {"infer_ms_per_image_b1": 0.5}}}),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="larger is better"):
        read_floors(bad)
    bad.write_text(json.dumps({"detection/fcos_r18": 1.0}), encoding="utf-8")
    with pytest.raises(ConfigError, match="expected"):
        read_floors(bad)


def test_the_repository_floors_name_real_cases_and_the_quick_run_checks_them():
    floors = read_floors(REPO_ROOT / "benchmarks" / "floors.json")
    for key in floors:
        section, case = key.split("/")
        assert case_for_recipe(case, Settings()).section == section
    quick = settings_from_options(Options(quick=True, precision="bf16"))
    default = {f"{case_for_recipe(r, quick).section}/{r}" for r in DEFAULT_RECIPES}
    # every default recipe carries a floor; so CI's --quick run checks each of them
    assert default <= set(floors)


def test_check_floors_refuses_results_or_runs_with_the_baseline_at_other_settings(
    tmp_path, floors_file, capsys
):
    results = tmp_path / "differing.json"
    write_json(results, differing_results())
    with pytest.raises(ConfigError, match="equal settings"):
        check_floors(differing_results(), {"detection/fcos_r18": {"train_images_per_s": 1}})
    argv = ["--from-json", str(results), "--check-floors", str(floors_file)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "detection/fcos_r18" in captured.err and "equal settings" in captured.err
    assert "Traceback" not in captured.err and "all met" not in captured.out
    # without --check-floors the same file makes its tables
    assert main(["--from-json", str(results)]) == 0
    assert "(fp32, 256×256 px)" in capsys.readouterr().out

    # a run is refused before anything is measured
    argv = ["--recipes", "fcos_r18", "--precision", "bf16", "--reps", "1"]
    for extra in (["--baseline-precision", "fp32"], ["--baseline-image-size", "256"]):
        assert main([*argv, *extra, "--check-floors", str(floors_file)]) == 2
        captured = capsys.readouterr()
        assert "fcos_r18" in captured.err and "--check-floors" in captured.err
        assert "[peak]" not in captured.out and "Traceback" not in captured.err

    # results from before the per-side fields still read, tabulate and check
    old = fake_results(train_ratio=1.3)
    for key in ("baseline_precision", "baseline_image_size"):
        del old["settings"][key]
    old_path = tmp_path / "old.json"
    write_json(old_path, old)
    assert main(["--from-json", str(old_path), "--check-floors", str(floors_file)]) == 0
    assert "all met" in capsys.readouterr().out
