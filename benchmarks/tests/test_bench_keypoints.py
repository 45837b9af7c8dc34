"""The keypoint benchmark runs end to end in its quick form and reports the OKS metrics."""

from __future__ import annotations

import json

import pytest

from benchmarks import keypoints


@pytest.mark.slow
def test_quick_keypoint_benchmark_reports_oks_metrics(tmp_path):
    out = tmp_path / "result.json"
    assert keypoints.main(["--quick", "--work", str(tmp_path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["case"] == "shapes_keypoints" and result["targets"] == {"pose/kpt_mAP": 0.8}
    assert {"pose/kpt_mAP", "pose/kpt_mAP50", "pose/mAP"} <= set(result["metrics"])
    assert result["met"] is (result["metrics"]["pose/kpt_mAP"] >= 0.8)
