"""The multi-task benchmark of the new heads runs end to end in its quick form: four variants
at one step budget, and each shared head's ratio to the base model."""

from __future__ import annotations

import json

import pytest

from benchmarks import multitask_new_heads


def test_variants_keep_the_recipe_but_the_heads_and_sets_they_leave_out(tmp_path):
    base = multitask_new_heads.variant_config(tmp_path, (), quick=True)
    assert sorted(base["model"]["heads"]) == ["cls", "det", "seg"]
    assert base["data"]["train"]["format"] == "coco"  # the shapes set alone, not a mix
    assert base["data"]["train"]["images"] == str(tmp_path / "shapes" / "train")
    assert "weight" not in base["data"]["train"]
    full = multitask_new_heads.variant_config(tmp_path, ("pose", "emb"), quick=False)
    assert sorted(full["model"]["heads"]) == ["cls", "det", "emb", "pose", "seg"]
    assert sorted(full["data"]["val"]) == ["ids", "shapes"]
    assert full["data"]["train"]["ids"]["root"] == str(tmp_path / "ids" / "train")
    assert full["trainer"]["max_steps"] == 1800 and full["model"]["backbone"]["name"] == "resnet18"
    # every variant sees as many shapes images a step: the recipe's batch of 12 at 2 : 1 gives
    # 8 shapes images on average, the batch of the variants without the identities set
    assert full["data"]["batch_size"] == 12
    weights = {k: v["weight"] for k, v in full["data"]["train"].items()}
    assert weights == {"shapes": 2, "ids": 1}
    plain = multitask_new_heads.variant_config(tmp_path, ("pose",), quick=False)
    assert plain["data"]["batch_size"] == 8


@pytest.mark.slow
def test_quick_benchmark_reports_each_shared_heads_ratio(tmp_path):
    out = tmp_path / "result.json"
    argv = ["--quick", "--work", str(tmp_path), "--out", str(out)]
    assert multitask_new_heads.main(argv) == 0
    variants = json.loads(out.read_text())["variants"]
    assert list(variants) == ["base", "+pose", "+emb", "+pose+emb"]
    assert {v["steps"] for v in variants.values()} == {4}
    shared = {"cls/top1", "det/mAP", "seg/mIoU"}
    assert set(variants["base"]["ratio_to_base"]) == shared
    assert "pose/kpt_mAP" in variants["+pose"]["metrics"]
    assert "emb/auc" in variants["+emb"]["metrics"]
    for result in variants.values():
        metrics, ratios = result["metrics"], result["ratio_to_base"]
        for key in shared:
            base = variants["base"]["metrics"][key]
            if base > 0:
                assert ratios[key] == pytest.approx(metrics[key] / base, abs=1e-3)
            else:  # no ratio to a base that scored 0
                assert ratios[key] is None
        assert result["met"] is all(r is not None and r >= 0.97 for r in ratios.values())


def _part(tmp_path, name, variants):
    path = tmp_path / name
    path.write_text(json.dumps({"case": "multitask_new_heads", "variants": variants}))
    return path


def test_merge_joins_runs_of_other_variants_and_computes_the_ratios(tmp_path, capsys):
    metrics = {"cls/top1": 0.8, "det/mAP": 0.5, "seg/mIoU": 0.9}
    a = _part(tmp_path, "a.json", {"base": {"steps": 10, "metrics": metrics}})
    worse = {"cls/top1": 0.8, "det/mAP": 0.48, "seg/mIoU": 0.9, "pose/kpt_mAP": 0.3}
    b = _part(tmp_path, "b.json", {"+pose": {"steps": 10, "metrics": worse}})
    out = tmp_path / "merged.json"
    assert multitask_new_heads.main(["--merge", str(b), str(a), "--out", str(out)]) == 0
    variants = json.loads(out.read_text())["variants"]
    assert list(variants) == ["base", "+pose"]  # in the benchmark's order
    assert variants["+pose"]["ratio_to_base"] == {"cls/top1": 1.0, "det/mAP": 0.96, "seg/mIoU": 1.0}
    assert variants["+pose"]["met"] is False and variants["base"]["met"] is True
    c = _part(tmp_path, "c.json", {"+emb": {"steps": 20, "metrics": metrics}})
    with pytest.raises(SystemExit, match="different step budgets"):
        multitask_new_heads.main(["--merge", str(a), str(c)])
