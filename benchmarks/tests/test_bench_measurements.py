"""The measuring primitives: timing in alternating rounds, paired ratios, FLOP counts, the
matrix-multiply peak, the data pipeline and the COCO evaluation timing."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.coco_eval import STAT_NAMES, measure_coco_eval, synthetic_coco
from benchmarks.flops import achieved, count_flops, train_step_flops
from benchmarks.harness import median, paired_ratio, time_alternating
from benchmarks.peak import matmul_flops, measure_matmul_peak
from benchmarks.pipeline import measure_pipeline, pipeline_config
from benchmarks.tests.conftest import FakeClock
from visionkit.config import load_config
from visionkit.errors import ConfigError


def test_time_alternating_records_each_call_and_median_picks_the_middle():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    # rounds: (a=3, b=10), (a=1, b=30), (a=2, b=20)
    times = time_alternating(fns, reps=3, clock=FakeClock([3, 10, 1, 30, 2, 20]))
    assert calls == ["a", "b"] * 3
    assert times == {"a": [3.0, 1.0, 2.0], "b": [10.0, 30.0, 20.0]}
    assert median(times["a"]) == 2.0
    assert median(times["b"]) == 20.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # A burst of load in round 2 slows both; the per-round ratio stays 2.
    ours, base = [1.0, 5.0, 1.1], [2.0, 10.0, 2.2]
    assert paired_ratio(base, ours) == pytest.approx(2.0)
    assert paired_ratio([1.0, 4.0, 9.0], [1.0, 1.0, 1.0]) == 4.0
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])


def test_flop_count_of_a_linear_layer_is_two_batch_in_out_forward():
    batch, n_in, n_out = 4, 16, 32
    layer = torch.nn.Linear(n_in, n_out)
    x = torch.randn(batch, n_in)
    assert count_flops(lambda: layer(x)) == 2 * batch * n_in * n_out
    # backward: the weight gradient only (x needs none), then with the input gradient too
    assert train_step_flops(lambda: layer(x).sum()) == 4 * batch * n_in * n_out
    x.requires_grad_(True)
    assert train_step_flops(lambda: layer(x).sum()) == 6 * batch * n_in * n_out
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert count_flops(lambda: layer(x.detach())) == 2 * batch * n_in * n_out
    done = achieved(4e9, 2.0, peak_flops_per_s=8e9)
    assert done == {"gflops_per_s": 2.0, "peak_fraction": 0.25}
    assert achieved(4e9, 2.0, None) == {"gflops_per_s": 2.0}


def test_matmul_peak_is_positive_at_both_precisions():
    assert matmul_flops(10) == 2000
    lines = []
    peak = measure_matmul_peak([32, 64], reps=2, log=lines.append)
    assert peak["sizes"] == [32, 64] and peak["reps"] == 2
    for precision in ("fp32", "bf16"):
        result = peak[precision]
        assert set(result["by_size"]) == {"32", "64"}
        assert result["best_size"] in (32, 64)
        for by_size in result["by_size"].values():
            assert by_size["median_s"] > 0 and by_size["gflops_per_s"] > 0
            assert len(by_size["times_s"]) == 2
        assert result["gflops_per_s"] == max(v["gflops_per_s"] for v in result["by_size"].values())
    assert len(lines) == 2 and lines[1].startswith("[peak] bf16")


def test_data_pipeline_measures_the_recipes_training_loader(tmp_path):
    config = load_config("configs/shapes/classify_r18.yaml")
    cache = {}
    result = measure_pipeline(
        config, (32, 32), batch_size=2, num_workers=0, batches=2, warmup=1, reps=2,
        root=tmp_path, cache=cache, name="classify_r18", log=lambda line: None,
    )  # fmt: skip
    assert result["dataset_images"] == (1 + 2) * 2 * 2 and result["batch_size"] == 2
    assert result["num_workers"] == 0 and result["image_size"] == [32, 32]
    assert result["transforms"] == ["VerticalFlip", "HorizontalFlip"]
    assert len(result["rep_images_per_s"]) == 2 and result["images_per_s"] > 0
    assert result["first_batch_s"] > 0
    (generated,) = cache.values()
    assert len(list((generated / "images").glob("*.png"))) == 12

    # the recipe's workers unless given; a training set that is not generated is refused
    assert pipeline_config(config, generated, (32, 32), 2, None).data.num_workers == 2
    assert pipeline_config(config, generated, (32, 32), 2, None).data.val is None
    data = config.to_dict()
    del data["data"]["train"]["synthetic"]
    with pytest.raises(ConfigError, match="generated shapes"):
        pipeline_config(load_config(data), generated, (32, 32), 2, None)


def test_coco_eval_timing_gives_the_stats_of_pycocotools_called_directly(tmp_path):
    gt, results = synthetic_coco(images=6, objects=4, dets=15, seed=3)
    assert len(gt["annotations"]) == 24 and len(results) == 90
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(gt), encoding="utf-8")
    dt_path.write_text(json.dumps(results), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        evaluator = COCOeval(coco, coco.loadRes(str(dt_path)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    direct = [float(v) for v in evaluator.stats]
    assert 0 < direct[0] < 1  # some detections match, not all

    timed = measure_coco_eval(images=6, objects=4, dets=15, reps=2, seed=3, log=lambda s: None)
    assert [timed["stats"][name] for name in STAT_NAMES] == direct
    assert timed["backend"].startswith("pycocotools")
    assert timed["detections"] == 90 and len(timed["eval_times_s"]) == 2
    for key in ("eval_s", "load_s", "evaluate_s", "accumulate_s", "summarize_s"):
        assert timed[key] > 0
    assert timed["eval_s"] == pytest.approx(
        timed["evaluate_s"] + timed["accumulate_s"] + timed["summarize_s"], rel=0.5
    )
