"""Warnings of the libraries under visionkit that no user can act on are not shown on every
run: Lightning's use of torch's deprecated ``LeafSpec``."""

from __future__ import annotations

import subprocess
import sys

import pytest

FLATTEN = (
    "from lightning.pytorch.utilities._pytree import _tree_flatten\n"
    "_tree_flatten({'images': [1, 2]}); _tree_flatten(3)\n"
)


def _stderr(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, check=True
    )
    return result.stderr


def test_lightnings_leafspec_deprecation_is_not_shown_once_visionkit_trains():
    if "LeafSpec" not in _stderr(FLATTEN):
        pytest.skip("this torch does not deprecate LeafSpec")
    assert "LeafSpec" not in _stderr("import visionkit.engine.runner\n" + FLATTEN)
