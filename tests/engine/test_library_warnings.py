"""Warnings and tips of the libraries under visionkit that no user can act on are not shown on
every run: Lightning's use of torch's deprecated ``LeafSpec``, its advertisement of its cloud
logger."""

from __future__ import annotations

import logging
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


def test_lightnings_cloud_logger_tip_is_not_shown_but_its_other_messages_are():
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    import visionkit.engine.runner  # noqa: F401

    seen: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: seen.append(record.getMessage())
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    log.addHandler(handler)
    level, log.level = log.level, logging.INFO
    try:
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
        rank_zero_info(
            "💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]"
        )
        rank_zero_info("GPU available: False, used: False")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert seen == ["GPU available: False, used: False"]
