"""Real runs at the smallest sizes through the command's entry point (:func:`benchmarks.cli.main`):
JSON, Markdown sections and floors of every kind of case."""

from __future__ import annotations

import copy
import json

import pytest

from benchmarks import suite
from benchmarks.cli import main
from benchmarks.harness import Settings
from benchmarks.report import RESULTS_SCHEMA
from benchmarks.suite import peak_precisions, run_benchmark
from benchmarks.tests.conftest import DOC, tiny_benchmark_argv


def test_smoke_run_through_the_cli_writes_json_and_markdown(tmp_path, capsys):
    out, doc = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(tiny_benchmark_argv("fcos_r18", out, doc)) == 0
    printed = capsys.readouterr().out
    assert printed.count("train   batch 2") == 2  # one progress line per measurement
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["schema"] == RESULTS_SCHEMA
    machine = results["machine"]
    for key in ("cpu", "cpu_count", "torch", "torchvision", "timm", "threads", "date"):
        assert machine[key]
    assert machine["threads"] == 1 and machine["precision"] == "fp32"
    assert results["settings"]["image_size"] == [64, 64]
    entries = results["sections"]["detection"]
    assert [e["case"] for e in entries] == ["fcos_r18"]
    for entry in entries:
        assert entry["image_size"] == [64, 64] and entry["num_classes"] == 3
        assert "torchvision" in entry["baseline"]["model"]
        for which in ("ours", "baseline"):
            r = entry[which]
            assert r["params"] > 1_000_000
            assert len(r["train_step_s"]) == 1 and r["train_step_s"][0] > 0
            assert r["train_images_per_s"] == pytest.approx(2 / r["train_step_s"][0])
            assert set(r["infer_ms_per_image"]) == {"1", "2"}
            assert all(v > 0 for v in r["infer_ms_per_image"].values())
            assert r["peak_rss_train_mib"] > 0 and r["peak_rss_infer_mib"] > 0
            assert r["outputs_per_image"] >= 0
        assert set(entry["ratios"]) == {
            "train_images_per_s",
            "infer_ms_per_image_b1",
            "infer_ms_per_image_b2",
        }
        assert all(v > 0 for v in entry["ratios"].values())
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("<!-- benchmark:detection:start -->")
    assert "| fcos_r18 |" in text and "ms/image b2" in text


def test_segmentation_smoke_run_through_the_cli_writes_its_own_section(tmp_path, capsys):
    out, doc = tmp_path / "seg.json", tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    assert main(tiny_benchmark_argv("semseg_fpn_r18", out, doc)) == 0
    printed = capsys.readouterr().out
    assert printed.count("[segmentation/semseg_fpn_r18]") >= 6  # train + 2 infer, each model
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["schema"] == RESULTS_SCHEMA
    assert list(results["sections"]) == ["segmentation", "flops"]
    assert "--recipes semseg_fpn_r18" in results["command"]
    (entry,) = results["sections"]["segmentation"]
    assert entry["case"] == "semseg_fpn_r18"
    assert entry["recipe"].endswith("semseg_fpn_r18.yaml")
    assert entry["image_size"] == [64, 64] and entry["num_classes"] == 4
    assert entry["ours"]["model"].startswith("visionkit: resnet18, fpn 96 P3-P5, semantic_fpn")
    assert "deeplabv3" in entry["baseline"]["model"].lower()
    assert "mobilenet_v3_large" in entry["baseline"]["model"]
    for which in ("ours", "baseline"):
        r = entry[which]
        assert r["params"] > 1_000_000
        assert len(r["train_step_s"]) == 1 and r["train_step_s"][0] > 0
        assert r["train_images_per_s"] == pytest.approx(2 / r["train_step_s"][0])
        assert set(r["infer_ms_per_image"]) == set(r["infer_s"]) == {"1", "2"}
        assert all(v > 0 for v in r["infer_ms_per_image"].values())
        assert r["peak_rss_train_mib"] > 0 and r["peak_rss_infer_mib"] > 0
        assert r["outputs_per_image"] is None
    for ratios in (entry["ratios"], entry["ratios_of_medians"]):
        assert set(ratios) == {
            "train_images_per_s",
            "infer_ms_per_image_b1",
            "infer_ms_per_image_b2",
        }
        assert all(v > 0 for v in ratios.values())

    # The detection section is left exactly as it was; ours is appended with its own markers.
    text = doc.read_text(encoding="utf-8")
    assert text.startswith(DOC.rstrip("\n") + "\n\n<!-- benchmark:segmentation:start -->\n")
    assert "<!-- benchmark:segmentation:end -->\n\n<!-- benchmark:flops:start -->" in text
    assert text.endswith("<!-- benchmark:flops:end -->\n")
    assert "old table" in text and "benchmark:detection-" not in text
    seg = text[text.index("<!-- benchmark:segmentation:start -->") : text.index("flops:start")]
    assert "| semseg_fpn_r18 | visionkit: resnet18" in seg and "ms/image b2" in seg
    assert "detections/image" not in seg and "**ours / torchvision**" in seg

    # The fp32 variant goes between benchmark:segmentation-fp32 markers; the rest is kept.
    assert (
        main(
            [
                "--from-json",
                str(out),
                "--markdown",
                str(doc),
                "--markdown-variant",
                "fp32",
            ]
        )
        == 0
    )
    again = doc.read_text(encoding="utf-8")
    assert again.startswith(text)
    assert again[len(text) :].startswith("\n<!-- benchmark:segmentation-fp32:start -->\n")
    assert again.endswith("<!-- benchmark:flops-fp32:end -->\n")


def test_multitask_smoke_run_through_the_cli_writes_its_own_section(tmp_path, capsys):
    out, doc = tmp_path / "mt.json", tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    argv = ["--recipes", "multitask_r18", "--measure", "models", "--peak-sizes", "64"]
    argv += ["--precision", "fp32", "--threads", "1"]
    argv += ["--image-size", "64", "--batch-size", "2", "--infer-batch-sizes", "1", "2"]
    argv += ["--warmup", "1", "--reps", "1", "--output-json", str(out), "--markdown", str(doc)]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("[multitask/multitask_r18]") >= 6
    results = json.loads(out.read_text(encoding="utf-8"))
    assert list(results["sections"]) == ["multitask", "flops"]
    (entry,) = results["sections"]["multitask"]
    assert entry["case"] == "multitask_r18" and entry["image_size"] == [64, 64]
    assert entry["heads"] == {"cls": "linear", "det": "fcos", "seg": "semantic_fpn"}
    assert entry["num_classes"] == {"cls": 4, "det": 3, "seg": 4}
    ours, base = entry["ours"], entry["baseline"]
    assert ours["model"].startswith("visionkit multi-task: resnet18")
    assert base["model"].startswith("3 single-task models in sequence")
    # three backbones against one
    assert 2.5 * ours["params"] < base["params"] < 3.5 * ours["params"]
    for r in (ours, base):
        assert len(r["train_step_s"]) == 1 and r["train_step_s"][0] > 0
        assert r["train_images_per_s"] == pytest.approx(2 / r["train_step_s"][0])
        assert set(r["infer_s"]) == set(r["infer_ms_per_image"]) == {"1", "2"}
        assert all(v > 0 for v in r["infer_ms_per_image"].values())
    ratios = entry["ratios"]
    assert set(ratios) == {"train_images_per_s", "infer_ms_per_image_b1", "infer_ms_per_image_b2"}
    for b in ("1", "2"):
        assert ratios[f"infer_ms_per_image_b{b}"] == pytest.approx(
            ours["infer_s"][b][0] / base["infer_s"][b][0]
        )

    text = doc.read_text(encoding="utf-8")
    assert text.startswith(DOC.rstrip("\n") + "\n\n<!-- benchmark:multitask:start -->\n")
    assert text.endswith("<!-- benchmark:flops:end -->\n")
    section = text[text.index("<!-- benchmark:multitask:start -->") : text.index("flops:start")]
    assert "| multitask_r18 | visionkit multi-task" in section
    assert "**multi-task / single-task**" in section and "torchvision**" not in section
    assert "inference target ≤ 0.50×" in section and "b2 " in section


def test_every_measurement_through_the_cli_writes_json_tables_and_checks_floors(
    tmp_path, capsys, monkeypatch
):
    # an fp32 run on a CPU without native bf16 measures no bf16 peak (emulated, ~a minute)
    monkeypatch.setattr(suite, "cpu_supports_bf16", lambda: False)
    out, doc, floors = tmp_path / "all.json", tmp_path / "benchmarks.md", tmp_path / "floors.json"
    argv = ["--recipes", "classify_r18", "--precision", "fp32", "--threads", "1"]
    argv += ["--measure", "models", "pipeline", "coco-eval", "--image-size", "32"]
    argv += ["--batch-size", "2", "--infer-batch-sizes", "1", "2", "--warmup", "1", "--reps", "1"]
    argv += ["--peak-sizes", "64", "--pipeline-batches", "1", "--pipeline-workers", "0"]
    argv += ["--coco-eval-size", "3", "2", "5", "--coco-eval-reps", "1"]
    argv += ["--output-json", str(out), "--markdown", str(doc)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[peak] fp32" in printed and "[pipeline/classify_r18]" in printed
    assert "[peak] bf16" not in printed
    assert "[coco-eval]" in printed

    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["schema"] == RESULTS_SCHEMA == 2 and results["complete"] is True
    assert list(results["sections"]) == ["classification", "flops", "pipeline", "coco-eval"]
    assert "--measure models pipeline coco-eval" in results["command"]
    assert "--coco-eval-size 3 2 5" in results["command"]
    (entry,) = results["sections"]["classification"]
    assert entry["batch_size"] == 2 and entry["image_size"] == [32, 32]
    peak = results["sections"]["flops"]["peak"]["fp32"]["gflops_per_s"]
    for which in ("ours", "baseline"):
        f = entry[which]["flops"]
        assert f["train_flops"] > 2 * f["infer_flops"]["2"] > 0  # backward counted
        assert f["infer_flops"]["2"] == pytest.approx(2 * f["infer_flops"]["1"], rel=0.01)
        step_s = entry[which]["train_step_s"][0]
        assert f["train_gflops_per_s"] == pytest.approx(f["train_flops"] / step_s / 1e9)
        assert f["train_peak_fraction"] == pytest.approx(f["train_gflops_per_s"] / peak)
        assert set(f["infer_peak_fraction"]) == {"1", "2"}
    # the same network: our backbone wrapper and head do timm's FLOPs
    assert entry["ours"]["flops"]["train_flops"] == entry["baseline"]["flops"]["train_flops"]
    (pipe,) = results["sections"]["pipeline"]
    assert pipe["case"] == "classify_r18" and pipe["num_workers"] == 0
    assert pipe["model_train_images_per_s"] == entry["ours"]["train_images_per_s"]
    assert pipe["pipeline_over_model"] == pytest.approx(
        pipe["images_per_s"] / pipe["model_train_images_per_s"]
    )
    coco = results["sections"]["coco-eval"]
    assert coco["images"] == 3 and coco["detections"] == 15 and len(coco["stats"]) == 12

    text = doc.read_text(encoding="utf-8")
    for tag in ("classification", "flops", "pipeline", "coco-eval"):
        assert f"<!-- benchmark:{tag}:start -->" in text and f"<!-- benchmark:{tag}:end -->" in text
    assert "**ours / timm**" in text and "Training target ≥ 70 % of the fp32 peak" in text
    assert "(bf16 not measured: no native bf16, no model at bf16)" in text
    assert "| classify_r18 | 0 | 2 | 32 | VerticalFlip, HorizontalFlip + normalise |" in text
    assert "| pycocotools" in text

    # a floor on the classification ratio: met at 0 (any ratio), failed at 1000
    ratio = entry["ratios"]["train_images_per_s"]
    for floor, code in ((0.0, 0), (1000.0, 1)):
        floors.write_text(
            json.dumps({"floors": {"classification/classify_r18": {"train_images_per_s": floor}}}),
            encoding="utf-8",
        )
        argv = ["--from-json", str(out), "--check-floors", str(floors)]
        assert main(argv) == code
        printed = capsys.readouterr().out
        assert ("FAILED" in printed) == (code == 1)
        assert (f"= {ratio:.2f}, below the floor 1000.00" in printed) == (code == 1)


def test_run_benchmark_hands_over_partial_results_after_each_case():
    settings = Settings(
        precision="fp32", image_size=(32, 32), batch_size=2, infer_batch_sizes=(1,),
        warmup=1, reps=1, measure=("models", "coco-eval"), peak_sizes=(32,),
        coco_images=2, coco_objects=1, coco_dets=2, coco_reps=1,
    )  # fmt: skip
    seen = []
    final = run_benchmark(
        ["classify_r18"],
        settings,
        log=lambda line: None,
        progress=lambda partial: seen.append(copy.deepcopy(partial)),
    )
    assert [list(p["sections"]) for p in seen] == [["classification", "flops"]]
    assert seen[0]["complete"] is False and final["complete"] is True
    assert list(final["sections"]) == ["classification", "flops", "coco-eval"]
    assert final["machine"]["wall_s"] > 0 and final["machine"]["cpu_share"] > 0


def test_run_with_the_baseline_at_its_own_precision_and_size_records_both(tmp_path, capsys):
    out, doc = tmp_path / "bb.json", tmp_path / "bb.md"
    argv = ["--recipes", "fcos_r18", "--measure", "models", "--peak-sizes", "64"]
    argv += ["--precision", "fp32", "--baseline-precision", "bf16", "--threads", "1"]
    argv += ["--image-size", "32", "--baseline-image-size", "64", "--batch-size", "2"]
    argv += ["--infer-batch-sizes", "1", "--warmup", "1", "--reps", "1"]
    assert main([*argv, "--output-json", str(out), "--markdown", str(doc)]) == 0
    assert "ours fp32, baseline bf16" in capsys.readouterr().out
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["settings"]["baseline_precision"] == "bf16"
    assert results["settings"]["baseline_image_size"] == [64, 64]
    assert "--baseline-precision bf16 --baseline-image-size 64 64" in results["command"]
    (entry,) = results["sections"]["detection"]
    assert entry["image_size"] == [32, 32]
    ours, base = entry["ours"], entry["baseline"]
    assert (ours["precision"], ours["image_size"]) == ("fp32", [32, 32])
    assert (base["precision"], base["image_size"]) == ("bf16", [64, 64])
    # each model's FLOP/s against the peak of its own precision
    peak = results["sections"]["flops"]["peak"]
    for r, precision in ((ours, "fp32"), (base, "bf16")):
        f = r["flops"]
        assert f["train_peak_fraction"] == pytest.approx(
            f["train_gflops_per_s"] / peak[precision]["gflops_per_s"]
        )
        assert f["infer_peak_fraction"]["1"] == pytest.approx(
            f["infer_gflops_per_s"]["1"] / peak[precision]["gflops_per_s"]
        )
    # the baseline's FLOPs are of its 4x larger images (and wider FPN): far above ours
    assert base["flops"]["infer_flops"]["1"] > 4 * ours["flops"]["infer_flops"]["1"]

    text = doc.read_text(encoding="utf-8")
    detection = text[: text.index("<!-- benchmark:flops:start -->")]
    flops = text[text.index("<!-- benchmark:flops:start -->") :]
    for section in (detection, flops):
        assert "ours: **fp32** at 32×32 px; baseline: **bf16** at 64×64 px" in section
        assert "4-conv towers (bf16, 64×64 px) |" in section
    assert "each model's % of the peak at its own precision" in flops


@pytest.mark.parametrize(
    ("precision", "baseline", "native", "measured"),
    [
        ("fp32", None, False, ("fp32",)),
        ("bf16", None, False, ("fp32", "bf16")),
        ("fp32", "bf16", False, ("fp32", "bf16")),
        ("fp32", None, True, ("fp32", "bf16")),
    ],
)
def test_the_bf16_peak_is_measured_where_a_model_uses_it_or_the_cpu_has_it(
    precision, baseline, native, measured, monkeypatch
):
    monkeypatch.setattr(suite, "cpu_supports_bf16", lambda: native)
    settings = Settings(precision=precision, baseline_precision=baseline)
    assert peak_precisions(settings) == measured
