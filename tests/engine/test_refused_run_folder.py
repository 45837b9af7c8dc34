"""A run that visionkit refuses for its trainer settings leaves no run folder behind: a refused
``trainer.strategy: ddp_spawn`` left ``runs/<name>/`` holding only ``config.yaml``, and the next
run's numbering skipped past it (``<name>-2``)."""

from __future__ import annotations

import pytest

from visionkit.engine.runner import train
from visionkit.errors import ConfigError


def test_a_refused_strategy_leaves_no_run_folder(tiny_config, tmp_path):
    tiny_config["trainer"].update(devices=2, strategy="ddp_spawn")
    with pytest.raises(ConfigError, match=r"trainer\.strategy: .* use trainer\.strategy=ddp"):
        train(tiny_config)
    runs = tmp_path / "runs"
    assert not (runs / "tiny").exists()
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_users_existing_folder_is_kept_as_it_was(tiny_config, tmp_path):
    """``--output-dir`` naming a folder of the user's: a refused run touches nothing in it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    tiny_config["trainer"].update(devices=2, strategy="ddp_spawn")
    with pytest.raises(ConfigError, match=r"trainer\.strategy"):
        train(tiny_config, output_dir=folder, exist_ok=True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
