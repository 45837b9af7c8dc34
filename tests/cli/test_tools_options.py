"""``python tools/<command>.py --debug ...`` works like ``visionkit --debug <command> ...``
(issue 19, item 9): the wrappers move visionkit's own options before the subcommand, wherever
they are given. Run as a user runs them, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "train": (["--config", "missing.yaml"], 2, "invalid configuration in missing.yaml"),
    "eval": (["--checkpoint", "missing.ckpt"], 1, "cannot load checkpoint missing.ckpt"),
}


def tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / f"{name}.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.reliability
@pytest.mark.parametrize("name", sorted(CASES))
def test_debug_after_the_command_shows_the_traceback(name, tmp_path):
    args, code, message = CASES[name]
    result = tool(name, *args, "--debug", cwd=tmp_path)
    assert result.returncode == code, result.stderr[-2000:]
    assert "Traceback (most recent call last)" in result.stderr
    assert f"error: {message}" in result.stderr


@pytest.mark.reliability
def test_without_debug_the_error_is_a_message_only(tmp_path):
    args, code, message = CASES["train"]
    result = tool("train", *args, cwd=tmp_path)
    assert result.returncode == code
    assert "Traceback" not in result.stderr and f"error: {message}" in result.stderr


def test_version_is_visionkits_from_any_wrapper(tmp_path):
    import visionkit

    result = tool("predict", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"visionkit {visionkit.__version__}"
