"""``visionkit benchmark``: timing helpers, the Markdown section writer, the floors check, and
one real run at a tiny size through the command-line entry point."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from visionkit import benchmark as bench
from visionkit.cli import main


class FakeClock:
    """A clock that advances by the next duration each time a call starts."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now = 0.0
        self.started = False

    def __call__(self) -> float:
        if self.started:  # the end of a call
            self.now += self.durations.pop(0)
        self.started = not self.started
        return self.now


def test_time_alternating_records_each_call_and_median_picks_the_middle():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    # rounds: (a=3, b=10), (a=1, b=30), (a=2, b=20)
    times = bench.time_alternating(fns, reps=3, clock=FakeClock([3, 10, 1, 30, 2, 20]))
    assert calls == ["a", "b"] * 3
    assert times == {"a": [3.0, 1.0, 2.0], "b": [10.0, 30.0, 20.0]}
    assert bench.median(times["a"]) == 2.0
    assert bench.median(times["b"]) == 20.0
    assert bench.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        bench.median([])


def test_paired_ratio_is_the_median_of_per_round_ratios():
    # A burst of load in round 2 slows both; the per-round ratio stays 2.
    ours, base = [1.0, 5.0, 1.1], [2.0, 10.0, 2.2]
    assert bench.paired_ratio(base, ours) == pytest.approx(2.0)
    assert bench.paired_ratio([1.0, 4.0, 9.0], [1.0, 1.0, 1.0]) == 4.0
    with pytest.raises(ValueError):
        bench.paired_ratio([1.0], [1.0, 2.0])


DOC = """# Benchmarks

Intro text.

<!-- benchmark:detection:start -->
old table
<!-- benchmark:detection:end -->

## Later section

kept as is
"""


def test_markdown_writer_replaces_only_its_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC, encoding="utf-8")
    bench.write_markdown_section(path, "detection", "| new | table |\n")
    text = path.read_text(encoding="utf-8")
    assert text == DOC.replace("old table", "| new | table |")
    # a second section is appended, and the first stays as it was
    bench.write_markdown_section(path, "detection-fp32", "fp32 table")
    again = path.read_text(encoding="utf-8")
    assert again.startswith(text.rstrip("\n"))
    assert again.endswith(
        "\n\n<!-- benchmark:detection-fp32:start -->\nfp32 table\n"
        "<!-- benchmark:detection-fp32:end -->\n"
    )
    bench.write_markdown_section(path, "detection-fp32", "fp32 v2")
    assert path.read_text(encoding="utf-8") == again.replace("fp32 table", "fp32 v2")


def test_markdown_writer_creates_the_file_and_rejects_unbalanced_markers(tmp_path):
    path = tmp_path / "new.md"
    bench.write_markdown_section(path, "detection", "table")
    assert path.read_text(encoding="utf-8") == (
        "<!-- benchmark:detection:start -->\ntable\n<!-- benchmark:detection:end -->\n"
    )
    broken = tmp_path / "broken.md"
    broken.write_text("<!-- benchmark:detection:start -->\nno end\n", encoding="utf-8")
    with pytest.raises(bench.ConfigError, match="unbalanced"):
        bench.write_markdown_section(broken, "detection", "table")


def _model_entry(label: str, step_s: float, ms: float) -> dict:
    return {
        "model": label,
        "params": 1_000_000,
        "train_step_s": [step_s] * 3,
        "train_images_per_s": 8 / step_s,
        "infer_s": {"1": [ms / 1000] * 3, "8": [8 * ms / 1000] * 3},
        "infer_ms_per_image": {"1": ms, "8": ms},
        "peak_rss_train_mib": 900.0,
        "rss_start_train_mib": 800.0,
        "peak_rss_infer_mib": 850.0,
        "rss_start_infer_mib": 840.0,
        "outputs_per_image": 10.0,
    }


def fake_results(train_ratio: float) -> dict:
    """A complete results dict (as --output-json writes) with a chosen training ratio."""
    base = _model_entry("torchvision FCOS", 1.0, 40.0)
    ours = _model_entry("visionkit", 1.0 / train_ratio, 20.0)
    settings = bench.Settings(precision="bf16", threads=2)
    return {
        "schema": bench.RESULTS_SCHEMA,
        "machine": bench.machine_info(settings),
        "settings": bench.asdict(settings),
        "command": bench.command_line(["fcos_r18"], settings),
        "sections": {
            "detection": [
                {
                    "case": "fcos_r18",
                    "recipe": "configs/shapes/fcos_r18.yaml",
                    "image_size": [256, 256],
                    "batch_size": 8,
                    "ours": ours,
                    "baseline": base,
                    "ratios": {
                        "train_images_per_s": train_ratio,
                        "infer_ms_per_image_b1": 0.5,
                        "infer_ms_per_image_b8": 0.5,
                    },
                }
            ]
        },
    }


@pytest.fixture()
def floors_file(tmp_path):
    path = tmp_path / "floors.json"
    floors = {
        "detection/fcos_r18": {"train_images_per_s": 1.2},
        "detection/retinanet_r18": {"train_images_per_s": 1.2},
    }
    path.write_text(json.dumps({"floors": floors}), encoding="utf-8")
    return path


def test_check_floors_exits_1_below_the_floor_and_0_above(tmp_path, floors_file, capsys):
    low, high = tmp_path / "low.json", tmp_path / "high.json"
    bench.write_json(low, fake_results(train_ratio=1.1))
    bench.write_json(high, fake_results(train_ratio=1.3))

    assert main(["benchmark", "--from-json", str(low), "--check-floors", str(floors_file)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert (
        "detection/fcos_r18: train_images_per_s ours/baseline = 1.10, below the floor 1.20" in out
    )
    assert "detection/retinanet_r18: not measured in this run" in out

    assert main(["benchmark", "--from-json", str(high), "--check-floors", str(floors_file)]) == 0
    out = capsys.readouterr().out
    assert "all met" in out and "FAILED" not in out


def test_check_floors_function_and_bad_floor_files(tmp_path):
    results = fake_results(train_ratio=0.9)
    failures, notes = bench.check_floors(
        results, {"detection/fcos_r18": {"train_images_per_s": 1.0}}
    )
    assert len(failures) == 1 and not notes
    assert bench.check_floors(results, {"detection/fcos_r18": {"train_images_per_s": 0.8}}) == (
        [],
        [],
    )
    missing = copy.deepcopy(results)
    del missing["sections"]["detection"][0]["ratios"]["train_images_per_s"]
    failures, _ = bench.check_floors(missing, {"detection/fcos_r18": {"train_images_per_s": 1}})
    assert failures == ["detection/fcos_r18: ratio train_images_per_s missing from the results"]

    # a floor on a lower-is-better ratio (ms/image) or a non-number is a config error
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"floors": {"detection/fcos_r18": {"infer_ms_per_image_b1": 0.5}}}),
        encoding="utf-8",
    )
    with pytest.raises(bench.ConfigError, match="larger is better"):
        bench.read_floors(bad)
    bad.write_text(json.dumps({"detection/fcos_r18": 1.0}), encoding="utf-8")
    with pytest.raises(bench.ConfigError, match="expected"):
        bench.read_floors(bad)


def test_from_json_rewrites_the_markdown_table(tmp_path):
    results = tmp_path / "results.json"
    bench.write_json(results, fake_results(train_ratio=2.0))
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    assert main(["benchmark", "--from-json", str(results), "--markdown", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nIntro text.\n\n<!-- benchmark:detection:start -->\n")
    assert text.endswith("<!-- benchmark:detection:end -->\n\n## Later section\n\nkept as is\n")
    assert "old table" not in text
    assert "| fcos_r18 | visionkit | 1.0 | 16.0 | 20.0 | 20.0 | 10 | 900 (+100) / 850 (+10) |" in (
        text
    )
    assert "**2.00×**" in text and "**0.50×**" in text


def test_settings_quick_defaults_and_explicit_options():
    quick = bench.settings_from_options(bench.Options(quick=True, precision="fp32", reps=2))
    assert quick.image_size == (128, 128) and quick.batch_size == 4
    assert quick.infer_batch_sizes == (1, 4)
    assert quick.reps == 2  # explicit beats --quick
    assert quick.measure == ("models",) and quick.peak_sizes == (2048,)
    assert bench.settings_from_options(bench.Options(quick=True, precision="fp32")).reps == 7
    full = bench.settings_from_options(bench.Options(precision="bf16", image_size=[96]))
    assert full.image_size == (96, 96) and full.reps == 5
    assert full.batch_size is None  # each recipe's data.batch_size
    assert full.measure == ("models", "pipeline", "coco-eval")
    assert bench.case_for_recipe("classify_r18", full).batch_size == 32
    assert bench.case_for_recipe("fcos_r18", full).batch_size == 8
    chosen = bench.settings_from_options(
        bench.Options(
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
    with pytest.raises(bench.ConfigError, match="measure"):
        bench.settings_from_options(bench.Options(precision="fp32", measure=["speed"]))
    with pytest.raises(bench.ConfigError, match="coco-eval-size"):
        bench.settings_from_options(bench.Options(precision="fp32", coco_eval_size=[10, 2]))
    assert bench.resolve_precision_name("auto") in ("fp32", "bf16")
    with pytest.raises(bench.ConfigError):
        bench.settings_from_options(bench.Options(precision="fp32", warmup=0))
    with pytest.raises(bench.ConfigError, match="image-size"):
        bench.settings_from_options(bench.Options(precision="fp32", image_size=[64, 64, 64]))


def test_unknown_recipe_is_a_config_error(capsys):
    assert main(["benchmark", "--recipes", "no_such_recipe", "--reps", "1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_recipe" in err and "fcos_r18" in err


def test_instance_recipe_has_no_case():
    with pytest.raises(bench.ConfigError, match="no benchmark case"):
        bench.case_for_recipe("instance_r18", bench.Settings())


def tiny_benchmark_argv(recipe: str, out, doc) -> list[str]:
    """``visionkit benchmark`` on one recipe, as small and short as it goes (models only)."""
    return [
        "benchmark", "--recipes", recipe, "--measure", "models", "--peak-sizes", "64",
        "--precision", "fp32", "--threads", "1", "--image-size", "64", "--batch-size", "2",
        "--infer-batch-sizes", "1", "2", "--warmup", "1", "--reps", "1",
        "--output-json", str(out), "--markdown", str(doc),
    ]  # fmt: skip


def test_smoke_run_through_the_cli_writes_json_and_markdown(tmp_path, capsys):
    out, doc = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(tiny_benchmark_argv("fcos_r18", out, doc)) == 0
    printed = capsys.readouterr().out
    assert printed.count("train   batch 2") == 2  # one progress line per measurement
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["schema"] == bench.RESULTS_SCHEMA
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


def test_retinanet_case_builds_torchvision_retinanet_at_the_same_size():
    from torchvision.models.detection import RetinaNet

    case = bench.case_for_recipe("retinanet_r18", bench.Settings(image_size=(96, 128)))
    baseline = case.build_baseline()
    assert isinstance(baseline, RetinaNet)
    assert baseline.head.classification_head.num_classes == 3  # no background channel
    assert baseline.transform.min_size == (96,) and baseline.transform.max_size == 128
    with pytest.raises(RuntimeError, match="build_ours"):
        case.make_batch("ours", 2)
    backbone = case.build_ours().backbone
    ours = case.make_batch("ours", 2)
    theirs = case.make_batch("baseline", 2)
    assert ours["images"].shape == (2, 3, 96, 128)
    assert len(theirs["images"]) == 2 and theirs["images"][0].shape == (3, 96, 128)
    # the same pixels and targets, normalised for ours only
    mean = torch.tensor(backbone.mean).view(3, 1, 1)
    std = torch.tensor(backbone.std).view(3, 1, 1)
    torch.testing.assert_close(ours["images"][1] * std + mean, theirs["images"][1])
    torch.testing.assert_close(ours["boxes"][1], theirs["targets"][1]["boxes"])
    assert (ours["boxes"][0][:, 2:] <= torch.tensor([128.0, 96.0])).all()


# --------------------------------------------------------------------------- segmentation


def test_segmentation_smoke_run_through_the_cli_writes_its_own_section(tmp_path, capsys):
    out, doc = tmp_path / "seg.json", tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    assert main(tiny_benchmark_argv("semseg_fpn_r18", out, doc)) == 0
    printed = capsys.readouterr().out
    assert printed.count("[segmentation/semseg_fpn_r18]") >= 6  # train + 2 infer, each model
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["schema"] == bench.RESULTS_SCHEMA
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
                "benchmark",
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


def test_segmentation_case_feeds_both_models_the_same_pixels_and_labels():
    from torchvision.models.segmentation import DeepLabV3

    case = bench.case_for_recipe(
        "semseg_fpn_r18", bench.Settings(image_size=(64, 96), batch_size=2)
    )
    assert isinstance(case, bench.SegmentationCase) and case.section == "segmentation"
    baseline = case.build_baseline()
    assert isinstance(baseline, DeepLabV3) and baseline.aux_classifier is None
    assert baseline.classifier[-1].out_channels == 4
    with pytest.raises(RuntimeError, match="build_ours"):
        case.make_batch("ours", 2)
    ours_model = case.build_ours()
    ours, theirs = case.make_batch("ours", 2), case.make_batch("baseline", 2)
    assert ours["images"].shape == theirs["images"].shape == (2, 3, 64, 96)
    backbone = ours_model.backbone
    mean, std = torch.tensor(backbone.mean).view(3, 1, 1), torch.tensor(backbone.std).view(3, 1, 1)
    tv_mean = torch.tensor(bench.IMAGENET_MEAN).view(3, 1, 1)
    tv_std = torch.tensor(bench.IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(
        ours["images"][1] * std + mean, theirs["images"][1] * tv_std + tv_mean
    )
    assert ours["semantic"].shape == (2, 64, 96) and ours["semantic"].dtype == torch.int64
    assert torch.equal(ours["semantic"], theirs["target"])
    assert ours["has_semantic"].tolist() == [True, True]
    assert set(ours["semantic"].unique().tolist()) == {0, 1, 2, 3}

    for which, model, batch in (("ours", ours_model, ours), ("baseline", baseline, theirs)):
        model.train()
        loss = case.train_loss(which, model, batch)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
        model.eval()
        with torch.inference_mode():
            maps = case.infer(which, model, batch)
        assert len(maps) == 2
        for label_map in maps:
            assert label_map.shape == (64, 96) and label_map.dtype == torch.int64
            assert int(label_map.min()) >= 0 and int(label_map.max()) < 4


def test_semantic_recipe_given_by_path_and_defaults(tmp_path):
    recipe = tmp_path / "my_deeplab.yaml"
    recipe.write_text(
        "model:\n"
        "  backbone: {name: resnet18, out_indices: [1, 2, 3, 4]}\n"
        "  heads:\n"
        "    sem: {name: deeplabv3plus, channels: 32, num_classes: 3}\n"
        "data: {image_size: 96}\n"
        "optimizer: {name: sgd, lr: 0.01, momentum: 0.9}\n",
        encoding="utf-8",
    )
    case = bench.case_for_recipe(str(recipe), bench.Settings(image_size=(64, 64), batch_size=2))
    assert isinstance(case, bench.SegmentationCase)
    assert case.name == "my_deeplab" and case.num_classes == 3
    assert case.labels["ours"] == "visionkit: resnet18, deeplabv3plus 32 ch"
    model = case.build_ours()
    assert isinstance(case.make_optimizer(model), torch.optim.SGD)  # the recipe's optimiser
    batch = case.make_batch("ours", 2)
    assert case.train_loss("ours", model.train(), batch).dim() == 0
    with torch.inference_mode():
        assert [m.shape for m in case.infer("ours", model.eval(), batch)] == [(64, 64)] * 2
    # without a size the recipe's data.image_size is used
    assert bench.case_for_recipe(str(recipe), bench.Settings()).image_size == (96, 96)

    # num_classes from classes.txt at train time cannot be benchmarked; batch 1 cannot train
    # torchvision's ASPP (BatchNorm of a pooled 1x1 map)
    with pytest.raises(bench.ConfigError, match="num_classes"):
        bench.case_for_recipe("configs/mask_folder/deeplabv3plus_r50.yaml", bench.Settings())
    with pytest.raises(bench.ConfigError, match="batch >= 2"):
        bench.case_for_recipe("semseg_fpn_r18", bench.Settings(batch_size=1))
    # a semantic head beside other heads is a multi-task case, not a segmentation case
    assert isinstance(bench.case_for_recipe("multitask_r18", bench.Settings()), bench.MultitaskCase)

    assert "semseg_fpn_r18" in bench.DEFAULT_RECIPES
    sections = {bench.case_for_recipe(r, bench.Settings()).section for r in bench.DEFAULT_RECIPES}
    assert sections == {"classification", "detection", "segmentation"}
    assert sections <= set(bench.TABLES)


# --------------------------------------------------------------------------- multi-task


def test_multitask_baseline_is_one_single_head_model_per_head_of_the_recipe():
    case = bench.case_for_recipe("multitask_r18", bench.Settings(image_size=(64, 64)))
    assert case.section == "multitask" and case.image_size == (64, 64)
    assert case.tasks == {"cls": "classification", "det": "detection", "seg": "semantic"}
    ours, baseline = case.build_ours(), case.build_baseline()
    assert list(ours.heads) == ["cls", "det", "seg"] and ours.neck is not None
    assert list(baseline) == ["cls", "det", "seg"]
    for head, single in baseline.items():
        assert list(single.heads) == [head]
        # the linear classifier reads the backbone: no neck; the others keep the recipe's FPN
        assert (single.neck is None) == (head == "cls")
        assert bench.count_params(single.backbone) == bench.count_params(ours.backbone)
    assert bench.count_params(baseline["det"].neck) == bench.count_params(ours.neck)
    # every model gets the same batch, with labels for every head
    batch = case.make_batch("baseline", 2)
    assert batch["images"].shape == (2, 3, 64, 64)
    assert batch["class"].shape == (2,) and len(batch["boxes"]) == 2
    assert batch["semantic"].shape == (2, 64, 64)
    torch.testing.assert_close(case.make_batch("ours", 2)["images"], batch["images"])
    with pytest.raises(bench.ConfigError, match="two or more heads"):
        bench.MultitaskCase("x", bench.Settings(), case.single_task_config("det"), "x.yaml")


def test_multitask_smoke_run_through_the_cli_writes_its_own_section(tmp_path, capsys):
    out, doc = tmp_path / "mt.json", tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    argv = ["benchmark", "--recipes", "multitask_r18", "--measure", "models", "--peak-sizes", "64"]
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


# --------------------------------------------------------------------------- classification


def test_classification_case_against_timm_feeds_both_models_the_same_batch():
    import timm

    case = bench.case_for_recipe("classify_r18", bench.Settings(image_size=(32, 32)))
    assert isinstance(case, bench.ClassificationCase) and case.section == "classification"
    assert case.batch_size == 32 and case.num_classes == 4
    baseline = case.build_baseline()
    assert isinstance(baseline, timm.models.ResNet) and baseline.fc.out_features == 4
    ours_model = case.build_ours()
    ours, theirs = case.make_batch("ours", 3), case.make_batch("baseline", 3)
    torch.testing.assert_close(ours["images"], theirs["images"])
    assert torch.equal(ours["class"], theirs["class"]) and ours["class"].shape == (3,)
    # the same architecture: our features_only backbone + linear head has timm's parameters
    assert bench.count_params(ours_model) == bench.count_params(baseline)
    for which, model, batch in (("ours", ours_model, ours), ("baseline", baseline, theirs)):
        loss = case.train_loss(which, model.train(), batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        with torch.inference_mode():
            predictions = case.infer(which, model.eval(), batch)
        assert [p["scores"].shape for p in predictions] == [(4,)] * 3
        assert all(0 <= p["label"] < 4 for p in predictions)

    recipe_dict = case.config.to_dict()
    recipe_dict["model"]["backbone"]["name"] = "torchvision/resnet18"
    with pytest.raises(bench.ConfigError, match="not a timm model"):
        bench.ClassificationCase("x", bench.Settings(), bench.load_config(recipe_dict), "x.yaml")


# --------------------------------------------------------------------------- FLOPs and peak


def test_flop_count_of_a_linear_layer_is_two_batch_in_out_forward():
    from visionkit.benchmarks.flops import achieved, count_flops, train_step_flops

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
    from visionkit.benchmarks.peak import matmul_flops, measure_matmul_peak

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


# --------------------------------------------------------------------------- data pipeline


def test_data_pipeline_measures_the_recipes_training_loader(tmp_path):
    from visionkit.benchmarks.pipeline import measure_pipeline, pipeline_config

    config = bench.load_config("configs/shapes/classify_r18.yaml")
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
    with pytest.raises(bench.ConfigError, match="generated shapes"):
        pipeline_config(bench.load_config(data), generated, (32, 32), 2, None)


# --------------------------------------------------------------------------- COCO evaluation


def test_coco_eval_timing_gives_the_stats_of_pycocotools_called_directly(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from visionkit.benchmarks.coco_eval import STAT_NAMES, measure_coco_eval, synthetic_coco

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


# --------------------------------------------------------------------------- everything at once


def test_every_measurement_through_the_cli_writes_json_tables_and_checks_floors(tmp_path, capsys):
    out, doc, floors = tmp_path / "all.json", tmp_path / "benchmarks.md", tmp_path / "floors.json"
    argv = ["benchmark", "--recipes", "classify_r18", "--precision", "fp32", "--threads", "1"]
    argv += ["--measure", "models", "pipeline", "coco-eval", "--image-size", "32"]
    argv += ["--batch-size", "2", "--infer-batch-sizes", "1", "2", "--warmup", "1", "--reps", "1"]
    argv += ["--peak-sizes", "64", "--pipeline-batches", "1", "--pipeline-workers", "0"]
    argv += ["--coco-eval-size", "3", "2", "5", "--coco-eval-reps", "1"]
    argv += ["--output-json", str(out), "--markdown", str(doc)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[peak] fp32" in printed and "[pipeline/classify_r18]" in printed
    assert "[coco-eval]" in printed

    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["schema"] == bench.RESULTS_SCHEMA == 2 and results["complete"] is True
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
    assert "| classify_r18 | 0 | 2 | 32 | VerticalFlip, HorizontalFlip + normalise |" in text
    assert "| pycocotools" in text

    # a floor on the classification ratio: met at 0 (any ratio), failed at 1000
    ratio = entry["ratios"]["train_images_per_s"]
    for floor, code in ((0.0, 0), (1000.0, 1)):
        floors.write_text(
            json.dumps({"floors": {"classification/classify_r18": {"train_images_per_s": floor}}}),
            encoding="utf-8",
        )
        argv = ["benchmark", "--from-json", str(out), "--check-floors", str(floors)]
        assert main(argv) == code
        printed = capsys.readouterr().out
        assert ("FAILED" in printed) == (code == 1)
        assert (f"= {ratio:.2f}, below the floor 1000.00" in printed) == (code == 1)


def test_the_repository_floors_name_real_cases_and_the_quick_run_checks_them():
    floors = bench.read_floors(bench.REPO_ROOT / "benchmarks" / "floors.json")
    for key in floors:
        section, case = key.split("/")
        assert bench.case_for_recipe(case, bench.Settings()).section == section
    quick = bench.settings_from_options(bench.Options(quick=True, precision="bf16"))
    default = {f"{bench.case_for_recipe(r, quick).section}/{r}" for r in bench.DEFAULT_RECIPES}
    # every default recipe carries a floor; so CI's --quick run checks each of them
    assert default <= set(floors)


def test_run_benchmark_hands_over_partial_results_after_each_case():
    settings = bench.Settings(
        precision="fp32", image_size=(32, 32), batch_size=2, infer_batch_sizes=(1,),
        warmup=1, reps=1, measure=("models", "coco-eval"), peak_sizes=(32,),
        coco_images=2, coco_objects=1, coco_dets=2, coco_reps=1,
    )  # fmt: skip
    seen = []
    final = bench.run_benchmark(
        ["classify_r18"],
        settings,
        log=lambda line: None,
        progress=lambda partial: seen.append(copy.deepcopy(partial)),
    )
    assert [list(p["sections"]) for p in seen] == [["classification", "flops"]]
    assert seen[0]["complete"] is False and final["complete"] is True
    assert list(final["sections"]) == ["classification", "flops", "coco-eval"]
    assert final["machine"]["wall_s"] > 0 and final["machine"]["cpu_share"] > 0


# --------------------------------------------------------------------------- baseline at its own


def test_each_side_gets_batches_of_its_own_size_and_torchvision_its_min_max_size():
    from torchvision.models.detection import FCOS

    settings = bench.Settings(image_size=(32, 48), baseline_image_size=(64, 128))
    case = bench.case_for_recipe("fcos_r18", settings)
    assert case.size_of("ours") == case.image_size == (32, 48)
    assert case.size_of("baseline") == (64, 128) and case.sides_differ()
    baseline = case.build_baseline()
    assert isinstance(baseline, FCOS)
    assert baseline.transform.min_size == (64,) and baseline.transform.max_size == 128
    case.build_ours()
    ours, theirs = case.make_batch("ours", 2), case.make_batch("baseline", 2)
    assert ours["images"].shape == (2, 3, 32, 48)
    assert [tuple(im.shape) for im in theirs["images"]] == [(3, 64, 128)] * 2
    # the same relative boxes and labels, each scaled to its side's image
    for i in range(2):
        relative = ours["boxes"][i] / torch.tensor([48.0, 32.0, 48.0, 32.0])
        torch.testing.assert_close(
            theirs["targets"][i]["boxes"] / torch.tensor([128.0, 64.0, 128.0, 64.0]), relative
        )
        assert torch.equal(ours["labels"][i], theirs["targets"][i]["labels"])
        assert (relative[:, :2] >= 0).all() and (relative[:, 2:] <= 1).all()
    assert not torch.equal(ours["boxes"][0], theirs["targets"][0]["boxes"])  # scaled, not copied

    # without a baseline size both sides have ours, and get the same pixels and boxes
    same = bench.case_for_recipe("fcos_r18", bench.Settings(image_size=(32, 48)))
    assert same.size_of("baseline") == (32, 48) and not same.sides_differ()
    assert same.build_baseline().transform.min_size == (32,)
    images, boxes, _ = same.synthetic(2, "ours")
    their_images, their_boxes, _ = same.synthetic(2, "baseline")
    assert torch.equal(images, their_images) and torch.equal(boxes[1], their_boxes[1])
    # the recipe's own size for ours (fcos_r18: 160) when only the baseline's is given
    recipe_size = bench.case_for_recipe("fcos_r18", bench.Settings(baseline_image_size=(256, 256)))
    assert recipe_size.size_of("ours") == (160, 160)
    assert recipe_size.size_of("baseline") == (256, 256)


def test_segmentation_classification_and_multitask_batches_have_each_sides_size():
    settings = bench.Settings(image_size=(32, 32), baseline_image_size=(64, 64), batch_size=2)
    seg = bench.case_for_recipe("semseg_fpn_r18", settings)
    seg.build_ours()
    assert seg.make_batch("ours", 2)["images"].shape == (2, 3, 32, 32)
    theirs = seg.make_batch("baseline", 2)
    assert theirs["images"].shape == (2, 3, 64, 64) and theirs["target"].shape == (2, 64, 64)

    cls = bench.case_for_recipe("classify_r18", settings)
    cls.build_ours()
    ours, theirs = cls.make_batch("ours", 3), cls.make_batch("baseline", 3)
    assert ours["images"].shape == (3, 3, 32, 32) and theirs["images"].shape == (3, 3, 64, 64)
    assert torch.equal(ours["class"], theirs["class"])

    multi = bench.case_for_recipe("multitask_r18", settings)
    multi.build_ours()
    ours, theirs = multi.make_batch("ours", 2), multi.make_batch("baseline", 2)
    assert ours["images"].shape == (2, 3, 32, 32) and theirs["images"].shape == (2, 3, 64, 64)
    assert ours["semantic"].shape == (2, 32, 32) and theirs["semantic"].shape == (2, 64, 64)
    assert torch.equal(ours["class"], theirs["class"])
    torch.testing.assert_close(2 * ours["boxes"][1], theirs["boxes"][1])


def test_precision_of_and_autocast_follow_each_side():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    mixed = bench.case_for_recipe(
        "classify_r18", bench.Settings(precision="bf16", baseline_precision="fp32")
    )
    assert mixed.precision_of("ours") == "bf16" and mixed.precision_of("baseline") == "fp32"
    assert mixed.sides_differ()
    with mixed.autocast("ours"):
        assert layer(x).dtype == torch.bfloat16
    with mixed.autocast("baseline"):
        assert layer(x).dtype == torch.float32
    other_way = bench.case_for_recipe(
        "classify_r18", bench.Settings(precision="fp32", baseline_precision="bf16")
    )
    with other_way.autocast("ours"):
        assert layer(x).dtype == torch.float32
    with other_way.autocast("baseline"):
        assert layer(x).dtype == torch.bfloat16
    # None: the baseline at ours; the same precision given explicitly is no difference
    for baseline_precision in (None, "bf16"):
        settings = bench.Settings(precision="bf16", baseline_precision=baseline_precision)
        same = bench.case_for_recipe("classify_r18", settings)
        assert same.precision_of("baseline") == "bf16" and not same.sides_differ()
        with same.autocast("baseline"):
            assert layer(x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="which"):
        mixed.precision_of("theirs")
    with pytest.raises(ValueError, match="baseline_precision"):
        bench.Settings(baseline_precision="fp16")
    with pytest.raises(ValueError, match="baseline_image_size"):
        bench.Settings(baseline_image_size=(64,))


def test_cli_parses_the_baseline_options_into_settings_and_the_command():
    from visionkit.cli import build_parser

    argv = ["benchmark", "--precision", "bf16", "--baseline-precision", "fp32"]
    args = build_parser().parse_args([*argv, "--baseline-image-size", "256"])
    assert args.baseline_precision == "fp32" and args.baseline_image_size == [256]
    args = build_parser().parse_args(["benchmark", "--baseline-image-size", "48", "64"])
    assert args.baseline_image_size == [48, 64] and args.baseline_precision is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["benchmark", "--baseline-precision", "fp16"])

    settings = bench.settings_from_options(
        bench.Options(
            precision="bf16", quick=True, baseline_precision="fp32", baseline_image_size=[256]
        )
    )
    assert settings.precision == "bf16" and settings.baseline_precision == "fp32"
    assert settings.image_size == (128, 128)  # --quick's, for ours only
    assert settings.baseline_image_size == (256, 256)
    command = bench.command_line(["fcos_r18"], settings)
    assert "--precision bf16" in command and "--image-size 128 128" in command
    assert "--baseline-precision fp32 --baseline-image-size 256 256" in command
    # neither given: the command is as before, the baseline at ours
    plain = bench.settings_from_options(bench.Options(precision="fp32", image_size=[96]))
    assert plain.baseline_precision is None and plain.baseline_image_size is None
    assert "baseline" not in bench.command_line(["fcos_r18"], plain)
    auto = bench.settings_from_options(bench.Options(precision="fp32", baseline_precision="auto"))
    assert auto.baseline_precision in ("fp32", "bf16")
    with pytest.raises(bench.ConfigError, match="baseline-image-size"):
        bench.settings_from_options(bench.Options(precision="fp32", baseline_image_size=[16]))
    with pytest.raises(bench.ConfigError, match="baseline-image-size"):
        bench.settings_from_options(bench.Options(precision="fp32", baseline_image_size=[1, 2, 3]))


def differing_results() -> dict:
    """``fake_results`` with ours at bf16 and 160 px, the baseline at fp32 and 256 px."""
    results = fake_results(train_ratio=3.0)
    results["settings"].update(baseline_precision="fp32", baseline_image_size=[256, 256])
    entry = results["sections"]["detection"][0]
    entry["image_size"] = [160, 160]
    entry["ours"].update(precision="bf16", image_size=[160, 160])
    entry["baseline"].update(precision="fp32", image_size=[256, 256])
    return results


def test_tables_name_the_baselines_settings_only_when_they_differ():
    old = fake_results(train_ratio=2.0)  # no per-side fields: results from before them
    for key in ("baseline_precision", "baseline_image_size"):
        del old["settings"][key]
    equal = copy.deepcopy(old)
    for which in ("ours", "baseline"):
        equal["sections"]["detection"][0][which].update(precision="bf16", image_size=[256, 256])
    table = bench.TABLES["detection"](old)
    assert bench.TABLES["detection"](equal) == table  # equal sides: exactly as before
    assert "; **bf16**, 256×256 px, training batch 8," in table
    assert "| | torchvision FCOS | 1.0 |" in table and "px)" not in table and "ours:" not in table

    differing = bench.TABLES["detection"](differing_results())
    assert (
        "; ours: **bf16** at 160×160 px; baseline: **fp32** at 256×256 px, training batch 8,"
        in differing
    )
    assert "| | torchvision FCOS (fp32, 256×256 px) | 1.0 |" in differing
    assert "| fcos_r18 | visionkit (bf16, 160×160 px) | 1.0 |" in differing
    assert "**3.00×**" in differing
    # the precision alone differs: the same size on both sides, named in each cell
    precision_only = differing_results()
    entry = precision_only["sections"]["detection"][0]
    entry["image_size"] = entry["ours"]["image_size"] = entry["baseline"]["image_size"] = [64, 64]
    text = bench.TABLES["detection"](precision_only)
    assert "ours: **bf16** at 64×64 px; baseline: **fp32** at 64×64 px" in text
    assert "| | torchvision FCOS (fp32, 64×64 px) |" in text


def test_check_floors_refuses_results_or_runs_with_the_baseline_at_other_settings(
    tmp_path, floors_file, capsys
):
    results = tmp_path / "differing.json"
    bench.write_json(results, differing_results())
    with pytest.raises(bench.ConfigError, match="equal settings"):
        bench.check_floors(differing_results(), {"detection/fcos_r18": {"train_images_per_s": 1}})
    argv = ["benchmark", "--from-json", str(results), "--check-floors", str(floors_file)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "detection/fcos_r18" in captured.err and "equal settings" in captured.err
    assert "Traceback" not in captured.err and "all met" not in captured.out
    # without --check-floors the same file makes its tables
    assert main(["benchmark", "--from-json", str(results)]) == 0
    assert "(fp32, 256×256 px)" in capsys.readouterr().out

    # a run is refused before anything is measured
    argv = ["benchmark", "--recipes", "fcos_r18", "--precision", "bf16", "--reps", "1"]
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
    bench.write_json(old_path, old)
    assert (
        main(["benchmark", "--from-json", str(old_path), "--check-floors", str(floors_file)]) == 0
    )
    assert "all met" in capsys.readouterr().out


def test_run_with_the_baseline_at_its_own_precision_and_size_records_both(tmp_path, capsys):
    out, doc = tmp_path / "bb.json", tmp_path / "bb.md"
    argv = ["benchmark", "--recipes", "fcos_r18", "--measure", "models", "--peak-sizes", "64"]
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
