"""A new run never writes into a folder that holds another run (issue 18, item 2): it goes to
``<name>-2``, ``-3``, ... unless it resumes or ``exist_ok`` says to reuse the folder."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import pytest
import yaml

from tests.helpers import run
from visionkit.engine.callbacks import curve_axis
from visionkit.engine.run_folder import (
    another_run_note,
    choose_run_dir,
    holds_run,
    resumed_folder,
)
from visionkit.engine.runner import train
from visionkit.errors import DataError

SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_choose_run_dir_increments_past_folders_holding_a_run(tmp_path, caplog):
    base = tmp_path / "runs" / "exp"
    assert choose_run_dir(base) == base  # nothing there
    base.mkdir(parents=True)
    (base / "config.yaml").write_text("name: exp\n")  # a run that saved nothing yet
    assert not holds_run(base) and choose_run_dir(base) == base
    (base / "checkpoints").mkdir()
    (base / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert choose_run_dir(base) == tmp_path / "runs" / "exp-2"
    note = another_run_note(base, tmp_path / "runs" / "exp-2")
    assert "holds another run; this run writes to" in note and "--exist-ok" in note
    assert another_run_note(base, base) is None
    (tmp_path / "runs" / "exp-2").mkdir()
    (tmp_path / "runs" / "exp-2" / "metrics.csv").write_text("epoch\n0\n")
    assert choose_run_dir(base) == tmp_path / "runs" / "exp-3"
    assert choose_run_dir(base, exist_ok=True) == base
    assert choose_run_dir(base, resuming=True) == base


def test_a_second_run_keeps_the_first_and_exist_ok_reuses_the_folder(tiny_config, caplog):
    first, _ = train(tiny_config, SHORT)
    kept = {p.name: digest(p) for p in [*first.glob("checkpoints/*.ckpt"), first / "metrics.csv"]}
    # a run stopped by its data makes no folder, and says nothing of one
    with pytest.raises(DataError), caplog.at_level(logging.WARNING, logger="visionkit"):
        train(tiny_config, [*SHORT, "data.train.images=/nonexistent/data"])
    assert "holds another run" not in caplog.text
    assert not first.with_name(first.name + "-2").exists()
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        second, _ = train(tiny_config, SHORT)
    assert second == first.with_name(first.name + "-2")
    assert f"{first} holds another run; this run writes to {second}" in caplog.text
    assert {p: digest(first / "checkpoints" / p if p.endswith(".ckpt") else first / p)
            for p in kept} == kept  # fmt: skip
    assert (second / "checkpoints" / "best.ckpt").is_file()
    # --exist-ok replaces the earlier run's files: a step.ckpt it left (this run writes
    # none) no longer makes resume=auto continue the earlier run
    (first / "checkpoints" / "step.ckpt").write_bytes(
        (first / "checkpoints/last.ckpt").read_bytes()
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        again, _ = train(tiny_config, SHORT, exist_ok=True)
    assert again == first
    assert f"{first} held an earlier run: removed its checkpoints/best.ckpt" in caplog.text
    assert not (first / "checkpoints" / "step.ckpt").exists()
    assert {p.name for p in (first / "checkpoints").glob("*.ckpt")} == {"best.ckpt", "last.ckpt"}


def test_resume_auto_continues_the_run_in_its_own_folder(tiny_config):
    first, _ = train(tiny_config, SHORT)
    resumed, _ = train(tiny_config, [*SHORT, "trainer.max_epochs=2", "resume=auto"])
    assert resumed == first
    assert not first.with_name(first.name + "-2").exists()


@pytest.mark.reliability
def test_resume_goes_on_in_the_checkpoints_own_run_folder_never_in_another_run(
    tiny_config, tmp_path
):
    """--resume runs/tiny-2/checkpoints/last.ckpt with the same --config wrote into the
    config's runs/tiny, another run, replacing its checkpoints, metrics and config.yaml."""
    first, _ = train(tiny_config, SHORT)
    second, _ = train(tiny_config, SHORT)
    assert second == first.with_name(first.name + "-2")
    kept = {p: digest(p) for p in [*first.glob("checkpoints/*.ckpt"), *first.glob("*.*")]}
    longer = [*SHORT, "trainer.max_epochs=2"]
    resumed, _ = train(tiny_config, longer, resume=second / "checkpoints" / "last.ckpt")
    assert resumed == second
    assert {p: digest(p) for p in kept} == kept
    # a checkpoint outside a run folder: a new run's folder, never another run's
    loose = tmp_path / "last.ckpt"
    loose.write_bytes((second / "checkpoints" / "last.ckpt").read_bytes())
    elsewhere, _ = train(tiny_config, [*SHORT, "trainer.max_epochs=3"], resume=loose)
    assert elsewhere == first.with_name(first.name + "-3")
    assert {p: digest(p) for p in kept} == kept


def test_a_relative_checkpoint_path_resumes_in_its_run_folder(tmp_path, monkeypatch):
    """`--resume last.ckpt` typed inside runs/x-2/checkpoints/ is that run's checkpoint."""
    checkpoints = tmp_path / "runs" / "x-2" / "checkpoints"
    checkpoints.mkdir(parents=True)
    monkeypatch.chdir(checkpoints)
    folder, continues = resumed_folder(tmp_path / "runs" / "x", Path("last.ckpt"), given=False)
    assert folder.resolve() == checkpoints.parent.resolve() and continues


@pytest.mark.reliability
def test_the_cli_prints_the_folder_it_chose(tiny_config, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    code, out, _ = run(["train", "--config", config, *SHORT], capsys)
    assert code == 0 and f"run folder: {tmp_path / 'runs' / 'tiny'}\n" in out
    code, out, err = run(["train", "--config", config, *SHORT], capsys)
    assert code == 0 and f"run folder: {tmp_path / 'runs' / 'tiny-2'}\n" in out
    code, out, _ = run(["train", "--config", config, "--exist-ok", *SHORT], capsys)
    assert code == 0 and f"run folder: {tmp_path / 'runs' / 'tiny'}\n" in out


def _rows(run_dir) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))


def test_metrics_csv_has_a_row_at_each_validation_between_epochs(tiny_config):
    """Validating every 2 steps with epochs of 3: each validation's metrics are in a row at its
    own step (not carried into later epochs' rows), an epoch-end validation shares the epoch's
    row, and the curves are drawn over steps."""
    steps = ["trainer.max_epochs=-1", "trainer.max_steps=6", "trainer.check_val_every_n_epoch=null"]
    run_dir, _ = train(tiny_config, [*steps, "trainer.val_check_interval=2"])
    rows = _rows(run_dir)
    assert [(r["epoch"], r["step"]) for r in rows] == [
        ("0", "2"),
        ("0", "3"),
        ("1", "4"),
        ("1", "6"),
    ]
    validated = [bool(r["cls/top1"]) for r in rows]
    trained = [bool(r["train/loss_epoch"]) for r in rows]
    assert validated == [True, False, True, True] and trained == [False, True, False, True]
    assert all(r["lr"] for r in rows)
    assert (run_dir / "plots" / "curves.png").stat().st_size > 0
    assert curve_axis([{"epoch": int(r["epoch"])} for r in rows]) == "step"
    assert curve_axis([{"epoch": 0}, {"epoch": 1}]) == "epoch"  # one row per epoch


def test_metrics_csv_rows_without_a_validation_carry_no_earlier_metrics(tiny_config):
    run_dir, _ = train(tiny_config, ["trainer.max_epochs=4", "trainer.check_val_every_n_epoch=2"])
    rows = _rows(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"]  # one row per epoch, as before
    assert [bool(r["cls/top1"]) for r in rows] == [False, True, False, True]
    assert all(r["train/loss_epoch"] for r in rows)


def test_eval_says_an_edited_config_yaml_beside_the_checkpoint_is_not_read(tiny_config, caplog):
    """eval and predict use the config saved in the checkpoint; an edit of the run folder's
    config.yaml changed nothing, without a word."""
    from visionkit.engine.runner import evaluate

    run_dir, _ = train(tiny_config, SHORT)
    best = run_dir / "checkpoints" / "best.ckpt"
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        evaluate(best)
    assert "differs from the config saved in the checkpoint" not in caplog.text
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["data"]["val"]["images"] = "/elsewhere/val"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        evaluate(best)
    assert (
        f"{run_dir / 'config.yaml'} differs from the config saved in the checkpoint "
        "(data.val.images: "
    ) in caplog.text
    assert "give the change as an override (e.g. data.val.images=...)" in caplog.text
    caplog.clear()  # given as an override: nothing to say
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        evaluate(best, [f"data.val.images={tiny_config['data']['val']['images']}"])
    assert "differs from the config saved in the checkpoint" not in caplog.text


def test_exist_ok_refuses_to_replace_the_run_that_init_from_reads(tiny_config):
    """--exist-ok removed the earlier run's checkpoints, the one init_from had just read among
    them."""
    from visionkit.errors import ConfigError

    first, _ = train(tiny_config, SHORT)
    best = first / "checkpoints" / "best.ckpt"
    with pytest.raises(ConfigError, match="is a file of the run in .*--exist-ok removes"):
        train(tiny_config, [*SHORT, f"model.init_from={best}"], exist_ok=True)
    assert best.is_file()
    again, _ = train(tiny_config, [*SHORT, f"model.init_from={best}"])  # beside it: fine
    assert again == first.with_name(first.name + "-2") and best.is_file()
