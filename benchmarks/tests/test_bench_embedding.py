"""The embedding benchmark (benchmarks/embedding.py): its smoke run and its digits folders."""

from __future__ import annotations

import json

import pytest

from benchmarks import embedding


@pytest.mark.slow
def test_quick_shapes_run_reports_the_metrics_and_targets(tmp_path):
    out = tmp_path / "results.json"
    assert (
        embedding.main(["--quick", "--cases", "shapes", "--work", str(tmp_path), "--out", str(out)])
        == 0
    )
    (result,) = json.loads(out.read_text())
    assert result["case"] == "shapes" and result["targets"] == {
        "emb/auc": 0.98,
        "emb/recall@1": 0.95,
    }
    assert 0.0 <= result["metrics"]["emb/auc"] <= 1.0 and result["met"] in (True, False)


def test_digits_are_split_into_seen_and_unseen_identities(tmp_path):
    pytest.importorskip("sklearn")  # a benchmark-only dependency
    embedding.write_digits(tmp_path, size=16)
    train = sorted(p.name for p in (tmp_path / "train").iterdir())
    val = sorted(p.name for p in (tmp_path / "val").iterdir())
    assert train == [f"digit_{d}" for d in range(7)] and val == ["digit_7", "digit_8", "digit_9"]


def test_the_digits_case_without_scikit_learn_says_what_to_install(monkeypatch, capsys):
    real = embedding.importlib.util.find_spec
    monkeypatch.setattr(
        embedding.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sklearn" else real(name, *a),
    )
    with pytest.raises(SystemExit) as caught:
        embedding.main(["--cases", "digits"])
    assert caught.value.code == 2
    assert "pip install scikit-learn" in capsys.readouterr().err
