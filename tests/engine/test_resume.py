"""Long runs survive interruption: exact resume, resume: auto, SIGTERM, SIGKILL, atomic saves,
non-finite losses; and the training options that go with them (EMA, early stopping, compile)."""

from __future__ import annotations

import csv
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import visionkit
from visionkit.checkpoint import load_checkpoint, save_atomic
from visionkit.engine import runner
from visionkit.engine.resume import scan_checkpoints
from visionkit.engine.runner import train
from visionkit.errors import CheckpointError, ConfigError, NonFiniteLossError
from visionkit.models.model import VisionModel

ROOT = Path(__file__).resolve().parents[2]


def step_rows(run_dir: Path, key: str) -> dict[int, float]:
    """``key`` per optimiser step from the per-step CSV log (``logs/metrics.csv``)."""
    rows = csv.DictReader((run_dir / "logs" / "metrics.csv").read_text().splitlines())
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


class _StopAfterEpoch(L.Callback):
    """Sends this process SIGTERM at the end of an epoch, as a cluster preempting the job."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(
    tiny_config, tmp_path, monkeypatch
):
    # with an EMA and early stopping, whose states a resume must restore too
    overrides = ["trainer.max_epochs=4", "scheduler.warmup_epochs=1", "seed=3"]
    overrides += ["ema.enabled=true", "ema.decay=0.9", "ema.warmup_steps=2"]
    overrides += ["early_stopping.patience=10"]
    straight, _ = train(tiny_config, overrides, output_dir=tmp_path / "straight")

    extra = runner.training_callbacks
    monkeypatch.setattr(
        runner,
        "training_callbacks",
        lambda *a, **k: [*extra(*a, **k), _StopAfterEpoch(1)],
    )
    with pytest.raises(visionkit.errors.TrainingInterrupted) as info:
        train(tiny_config, overrides, output_dir=tmp_path / "resumed")
    assert info.value.exit_code == 143
    assert "--resume" in str(info.value)
    monkeypatch.setattr(runner, "training_callbacks", extra)
    resumed_dir = tmp_path / "resumed"
    assert load_checkpoint(resumed_dir / "checkpoints" / "last.ckpt")["global_step"] == 6
    train(tiny_config, [*overrides, "resume=auto"], output_dir=resumed_dir)

    last_a = load_checkpoint(straight / "checkpoints" / "last.ckpt")
    last_b = load_checkpoint(resumed_dir / "checkpoints" / "last.ckpt")
    # the averaged weights (state_dict) and the raw ones (Lightning's current_model_state)
    for key in ("state_dict", "current_model_state"):
        a, b = last_a[key], last_b[key]
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=f"{key} {name}")
    head = "model.heads.cls.classifier.3.weight"  # the EMA is not the raw weights
    assert not torch.equal(last_a["state_dict"][head], last_a["current_model_state"][head])
    stops = [k for k in last_a["callbacks"] if k.startswith("EarlyStopping")]
    assert len(stops) == 1
    early_a, early_b = last_a["callbacks"][stops[0]], last_b["callbacks"][stops[0]]
    assert early_b["wait_count"] == early_a["wait_count"]
    assert float(early_b["best_score"]) == pytest.approx(float(early_a["best_score"]), abs=1e-6)
    # the learning rate and the loss at every step equal the uninterrupted run's
    lr_a, lr_b = step_rows(straight, "train/lr"), step_rows(resumed_dir, "train/lr")
    assert len(lr_a) == 12 and lr_b == pytest.approx(lr_a, abs=1e-12)
    loss_a = step_rows(straight, "train/loss_step")
    loss_b = step_rows(resumed_dir, "train/loss_step")
    assert loss_b == pytest.approx(loss_a, abs=1e-6)


def test_resume_can_raise_the_number_of_epochs(tiny_config, tmp_path):
    run_dir, _ = train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "run")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(ckpt)["global_step"] == 3
    train(tiny_config, ["trainer.max_epochs=3"], output_dir=run_dir, resume=ckpt)
    # finishing the resumed epoch, Lightning's ModelCheckpoint said it "could not find the
    # monitored key" (no validation yet), as if the run were broken: the command's output
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({**tiny_config, "trainer": {**tiny_config["trainer"], "max_epochs": 4}})
    )
    result = subprocess.run(
        [sys.executable, "-m", "visionkit.cli", "train", "--resume", str(ckpt)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "could not find the monitored key" not in result.stdout + result.stderr
    last = load_checkpoint(ckpt)
    assert (last["epoch"], last["global_step"]) == (2, 9)
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # the callback state came back too


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("model.backbone.name=resnet18", "model.backbone.name: 'simple_cnn' -> 'resnet18'"),
        ("optimizer.lr=0.01", "optimizer.lr: 0.003 -> 0.01"),
        ("scheduler.name=step", "scheduler.name: 'cosine' -> 'step'"),
    ],
    ids=["model", "lr", "schedule"],
)
def test_a_resume_that_changes_the_model_or_optimiser_is_refused_before_writing(
    tiny_config, tmp_path, override, said
):
    """Another model raised a state_dict traceback after config.yaml was rewritten; another
    learning rate was written to config.yaml and not used (the checkpoint's optimiser and
    schedule continue)."""
    run_dir, _ = train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "run")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    before = (run_dir / "config.yaml").read_text()
    with pytest.raises(ConfigError) as info:
        train(tiny_config, ["trainer.max_epochs=2", override], output_dir=run_dir, resume=ckpt)
    text = str(info.value)
    assert f"--resume {ckpt}: this config's" in text and said in text
    assert f"start a new run from its weights with model.init_from={ckpt}" in text
    assert (run_dir / "config.yaml").read_text() == before
    # the data, the budget and a head's thresholds may change
    train(tiny_config, ["trainer.max_epochs=2"], output_dir=run_dir, resume=ckpt)


def test_best_ckpt_keeps_the_weights_only_and_resume_takes_last(tiny_config, tmp_path):
    """best.ckpt is what users ship: the optimiser's state (twice the weights with AdamW) and
    the EMA's raw copy are left out when the run ends; resume: auto skips it, and resuming
    from it says to take last.ckpt."""
    config = ["trainer.max_epochs=1", "ema.enabled=true", "ema.warmup_steps=0"]
    run_dir, metrics = train(tiny_config, config, output_dir=tmp_path / "run")
    best, last = run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"
    stripped, full = load_checkpoint(best), load_checkpoint(last)
    assert not {"optimizer_states", "lr_schedulers", "current_model_state"} & set(stripped)
    assert {"optimizer_states", "current_model_state"} <= set(full)
    assert best.stat().st_size < 0.5 * last.stat().st_size
    assert stripped["visionkit"]["label_names"] == full["visionkit"]["label_names"]
    again = runner.evaluate(best)  # the same weights, the same score
    assert again["cls/top1"] == pytest.approx(metrics["cls/top1"], abs=1e-6)
    # and a model in memory, as export and predict_files take one (it was "expected str,
    # bytes or os.PathLike object, not VisionModel")
    in_memory = runner.evaluate(visionkit.load(best))
    assert in_memory["cls/top1"] == pytest.approx(metrics["cls/top1"], abs=1e-6)
    with pytest.raises(ConfigError, match=r"best\.ckpt holds the model's weights only .* resume "
                       r"from the last\.ckpt beside it, or .* model\.init_from="):  # fmt: skip
        train(tiny_config, ["trainer.max_epochs=2"], output_dir=run_dir, resume=best)
    os.utime(best)  # the newest file: auto still takes last.ckpt
    train(
        tiny_config, ["trainer.max_epochs=2", "ema.enabled=true"], output_dir=run_dir, resume="auto"
    )
    assert load_checkpoint(last)["global_step"] == 6


def test_a_resume_is_not_warned_that_its_checkpoint_folder_is_not_empty():
    """Lightning's ModelCheckpoint said "Checkpoint directory ... exists and is not empty" on
    every resume; a new run always gets a folder of its own. (pytest drops filters set while
    it collects, so the package's are installed again here.)"""
    from lightning.pytorch.utilities import rank_zero_warn

    with warnings.catch_warnings(record=True) as said:
        importlib.reload(visionkit.engine)
        rank_zero_warn("Checkpoint directory runs/a/checkpoints exists and is not empty.")
        rank_zero_warn("another warning")
    assert [str(w.message) for w in said] == ["another warning"]


def test_resume_without_config_continues_in_the_checkpoints_run_folder(
    tiny_config, tmp_path, monkeypatch, capsys
):
    """``visionkit train --resume CKPT``: the run's saved config, its own folder, overrides
    on top (as Ultralytics' ``resume=True model=last.pt``); a run that has done its
    ``max_steps`` says how to continue instead of stopping at once having trained nothing."""
    from visionkit.cli import main

    monkeypatch.chdir(tmp_path)  # the saved config's relative paths are the user's
    run_dir, _ = train(tiny_config, ["trainer.max_steps=3"], output_dir=tmp_path / "run")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert main(["train", "--resume", str(ckpt)]) == 2
    assert (
        f"trainer.max_steps=3: {ckpt} has done 3 steps already, so resuming it would train "
        "nothing; give it a larger budget to continue the run, e.g. trainer.max_steps=6"
    ) in capsys.readouterr().err
    assert main(["train", "--resume", str(ckpt), "trainer.max_steps=5"]) == 0
    assert f"run folder: {run_dir}\n" in capsys.readouterr().out
    assert load_checkpoint(ckpt)["global_step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no run-2, nothing else

    with pytest.raises(SystemExit):  # neither --config nor --resume: argparse's error
        main(["train", "trainer.max_steps=5"])
    assert "the following arguments are required: --config" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the checkpoint without its option: --resume is meant
        main(["train", str(ckpt)])
    assert f"did you mean:\n  visionkit train --resume {ckpt}" in capsys.readouterr().err
    assert main(["train", "--resume", "auto"]) == 2  # auto needs the config to find the run
    assert "'auto' needs the config to find the run folder" in capsys.readouterr().err
    foreign = tmp_path / "foreign.ckpt"
    save_atomic({"state_dict": {}, "global_step": 0}, foreign)
    assert main(["train", "--resume", str(foreign)]) == 1
    assert "it holds no visionkit config (not written by visionkit train): give --config" in (
        capsys.readouterr().err
    )
    moved = tmp_path / "downloads" / "last.ckpt"  # outside a run folder: where to write?
    moved.parent.mkdir()
    moved.write_bytes(ckpt.read_bytes())
    assert main(["train", "--resume", str(moved), "trainer.max_steps=7"]) == 2
    assert "not in a run folder's checkpoints/; give the folder to continue the run in with " \
        "--output-dir" in capsys.readouterr().err  # fmt: skip
    assert sorted(p.name for p in moved.parent.iterdir()) == ["last.ckpt"]

    # resume=auto on a run that has done its steps (a requeued job): the final validation
    # runs and metrics.json is written again, as before; nothing is trained
    (run_dir / "metrics.json").unlink()
    train(tiny_config, ["trainer.max_steps=5", "resume=auto"], output_dir=run_dir)
    assert (run_dir / "metrics.json").is_file()
    assert load_checkpoint(ckpt)["global_step"] == 5


def test_resuming_a_run_whose_time_budget_is_spent_says_how_to_continue(
    tiny_config, tmp_path, monkeypatch, capsys
):
    """The real-photo recipes stop on ``trainer.max_time``: resumed to train longer, the
    restored timer stopped the run at once, having trained nothing."""
    from visionkit.cli import main

    monkeypatch.chdir(tmp_path)
    budget = ["trainer.max_epochs=-1", "trainer.max_time=00:00:00:02"]
    run_dir, _ = train(tiny_config, budget, output_dir=tmp_path / "run")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    done = load_checkpoint(ckpt)["global_step"]
    assert main(["train", "--resume", str(ckpt), "trainer.max_steps=1000"]) == 2
    err = capsys.readouterr().err
    assert f"trainer.max_time=00:00:00:02: {ckpt} has trained for " in err
    assert "s of it already, so resuming it would train nothing; give it more time to " \
        "continue the run, e.g. trainer.max_time=00:00:01:00, or trainer.max_time=null" in err  # fmt: skip
    more = ["trainer.max_time=null", f"trainer.max_steps={done + 2}"]
    assert main(["train", "--resume", str(ckpt), *more]) == 0
    assert load_checkpoint(ckpt)["global_step"] == done + 2


def test_a_run_stopped_after_its_last_step_finishes_when_resumed(tiny_config, tmp_path):
    """Ctrl-C in the validation after the last step leaves last.ckpt with the budget spent and
    no metrics.json; the "Continue with: --resume" it printed was refused (it would train
    nothing). It now runs the final validation and writes metrics.json, with the run's
    training time (it had none: no training ran in the resumed process)."""
    budget = ["trainer.max_epochs=-1", "trainer.max_steps=3"]
    run_dir, metrics = train(tiny_config, budget, output_dir=tmp_path / "run")
    (run_dir / "metrics.json").unlink()  # as a run stopped before it ended leaves it
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(ckpt)["callbacks"]["TrainingTime"]
    _, again = train(tiny_config, budget, output_dir=run_dir, resume=ckpt)
    assert (run_dir / "metrics.json").is_file() and again["cls/top1"] == metrics["cls/top1"]
    assert load_checkpoint(ckpt)["global_step"] == 3
    # the training time of the run, which this resume did not add to (it was left out)
    assert {k: again[k] for k in saved} == saved
    assert json.loads((run_dir / "metrics.json").read_text())["time/train_s"] > 0
    with pytest.raises(ConfigError, match="so resuming it would train nothing"):
        train(tiny_config, budget, output_dir=run_dir, resume=ckpt)


def test_resume_auto_skips_a_truncated_checkpoint_and_uses_the_previous_good_one(
    tiny_config, tmp_path, caplog
):
    cfg = ["trainer.max_epochs=2", "trainer.checkpoint_every_n_steps=2"]
    run_dir, _ = train(tiny_config, cfg, output_dir=tmp_path / "run")
    last = run_dir / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="last.ckpt.*truncated or corrupt"):
        load_checkpoint(last)
    found, _ = scan_checkpoints(run_dir / "checkpoints")
    assert found is not None and found.name != "last.ckpt"
    fallback_step = load_checkpoint(found)["global_step"]

    with caplog.at_level("WARNING", logger="visionkit"):
        train(tiny_config, ["trainer.max_epochs=3", "resume=auto"], output_dir=run_dir)
    assert "skipping" in caplog.text and "last.ckpt" in caplog.text
    assert fallback_step < 9
    assert load_checkpoint(last)["global_step"] == 9


def test_resume_auto_without_checkpoints_starts_a_new_run(tiny_config, tmp_path):
    run_dir, _ = train(
        tiny_config, ["trainer.max_epochs=1", "resume=auto"], output_dir=tmp_path / "new"
    )
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3


def test_resume_auto_with_only_corrupt_checkpoints_keeps_the_old_run_and_starts_beside_it(
    tiny_config, tmp_path, caplog
):
    """A folder whose checkpoints are all corrupt still holds a run (its metrics, its
    checkpoints): resume=auto starts the new run in a folder of its own, as a new run does,
    and leaves every file of the old one as it was."""
    old, _ = train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "run")
    for ckpt in (old / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    with caplog.at_level(logging.INFO, logger="visionkit"):
        run_dir, _ = train(tiny_config, ["trainer.max_epochs=1", "resume=auto"], output_dir=old)
    assert run_dir == tmp_path / "run-2"
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert "none of the 2 checkpoints in" in caplog.text
    assert "holds another run; this run writes to" in caplog.text


def test_resume_from_a_missing_or_corrupt_file_is_a_clear_error(tiny_config, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.ckpt"):
        train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "r", resume=bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        train(tiny_config, [], output_dir=tmp_path / "r", resume=tmp_path / "missing.ckpt")


# --------------------------------------------------------------------------- real signals


def _write_config(tiny_config, tmp_path: Path, **trainer) -> Path:
    cfg = dict(tiny_config)
    cfg["trainer"] = {**cfg["trainer"], **trainer}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_training(config: Path, run_dir: Path, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "visionkit.cli", "train", "--config", str(config)]
    cmd += ["--output-dir", str(run_dir), *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_step(proc: subprocess.Popen, path: Path, step: int, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if path.is_file():
            try:
                if load_checkpoint(path)["global_step"] >= step:
                    return
            except CheckpointError:
                pass  # being replaced right now: the rename is atomic, try again
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{path} did not reach step {step} in {timeout} s")


def test_sigkill_mid_run_then_resume_continues_from_the_last_checkpoint(tiny_config, tmp_path):
    config = _write_config(tiny_config, tmp_path, max_epochs=6, checkpoint_every_n_steps=1)
    run_dir = tmp_path / "run"
    step_ckpt = run_dir / "checkpoints" / "step.ckpt"
    proc = _start_training(config, run_dir)
    _wait_for_step(proc, step_ckpt, 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    saved = {p.name: load_checkpoint(p)["global_step"] for p in run_dir.glob("checkpoints/*.ckpt")}
    assert saved and all(step >= 1 for step in saved.values()), saved  # every file loads
    resumed_from = max(saved.values())

    # 3 epochs of 3 steps: beyond any step the killed run can have reached before the kill
    proc = _start_training(config, run_dir, "resume=auto", "trainer.max_epochs=3")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert "continuing from" in err
    final = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert resumed_from >= 4 and resumed_from < 9, saved
    assert final["global_step"] == 9, (saved, final["global_step"])


def test_sigterm_saves_a_checkpoint_and_exits_non_zero(tiny_config, tmp_path):
    config = _write_config(tiny_config, tmp_path, max_epochs=50, checkpoint_every_n_steps=1)
    run_dir = tmp_path / "run"
    proc = _start_training(config, run_dir)
    _wait_for_step(proc, run_dir / "checkpoints" / "step.ckpt", 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "stopped: interrupted by SIGTERM" in err and "error:" not in err
    assert f"Continue with: visionkit train --resume {run_dir / 'checkpoints' / 'last.ckpt'}" in err
    assert "Traceback" not in err
    assert "weights_only` was not set" not in err  # Lightning's note on an unsaid argument
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] >= 2
    model = visionkit.load(run_dir / "checkpoints" / "last.ckpt")  # usable as is
    assert isinstance(model, VisionModel)


# --------------------------------------------------------------------------- atomic saves


def test_a_save_that_fails_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_atomic({"step": torch.tensor(1)}, path)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert int(load_checkpoint(path)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left


SAVE_FOREVER = """
import sys, torch
from visionkit.checkpoint import save_atomic
path, i = sys.argv[1], 0
while True:
    i += 1
    save_atomic({"i": torch.tensor(i), "big": torch.full((1_000_000,), float(i))}, path)
    print(i, flush=True)
"""


def test_sigkill_during_saves_never_leaves_a_corrupt_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    for delay in (0.05, 0.13, 0.29):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVE_FOREVER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # one save done: the file exists
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ckpt = load_checkpoint(path)
        assert torch.all(ckpt["big"] == float(ckpt["i"]))


# --------------------------------------------------------------------------- non-finite loss


def _nan_at_step(monkeypatch, bad_steps: set[int]) -> None:
    original = VisionModel.loss
    calls = {"n": 0}

    def loss(self, outputs, batch):
        losses = original(self, outputs, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] in bad_steps:
                losses = {k: v * float("nan") for k, v in losses.items()}
        return losses

    monkeypatch.setattr(VisionModel, "loss", loss)


def test_a_nan_loss_stops_the_run_naming_the_step_and_each_head_loss(
    tiny_config, tmp_path, monkeypatch
):
    _nan_at_step(monkeypatch, {3})
    with pytest.raises(NonFiniteLossError) as info:
        train(tiny_config, ["trainer.max_epochs=2"], output_dir=tmp_path / "run")
    message = str(info.value)
    assert "step 2" in message and "cls/loss=nan" in message and "loss=nan" in message
    assert "on_nonfinite_loss=skip" in message


def test_on_nonfinite_loss_skip_skips_and_counts_the_batches(
    tiny_config, tmp_path, monkeypatch, caplog
):
    _nan_at_step(monkeypatch, {2, 5})
    with caplog.at_level("WARNING", logger="visionkit"):
        run_dir, _ = train(
            tiny_config,
            ["trainer.max_epochs=2", "trainer.on_nonfinite_loss=skip"],
            output_dir=tmp_path / "run",
        )
    assert "2 skipped so far" in caplog.text
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6  # Lightning counts the skipped batches' (empty) steps
    assert last["visionkit_skipped_batches"] == 2
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


# --------------------------------------------------------------------------- options


def test_ema_weights_are_validated_saved_and_loaded_beside_the_raw_weights(tiny_config, tmp_path):
    run_dir, metrics = train(
        tiny_config,
        ["trainer.max_epochs=2", "ema.enabled=true", "ema.decay=0.9", "ema.warmup_steps=0"],
        output_dir=tmp_path / "run",
    )
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert ema.keys() == raw.keys()
    differs = [k for k in ema if ema[k].is_floating_point() and not torch.equal(ema[k], raw[k])]
    assert differs, "the EMA weights equal the raw weights"
    assert ckpt["averaging_state"]["n_averaged"] == 6
    # visionkit.load gives the EMA weights, whose metrics picked best.ckpt
    model = visionkit.load(run_dir / "checkpoints" / "last.ckpt")
    name = "backbone.stages.0.0.weight"
    key = next(k for k in ema if k.endswith(name))
    torch.testing.assert_close(model.state_dict()[name], ema[key])
    again = runner.evaluate(run_dir / "checkpoints" / "best.ckpt")
    assert again["cls/top1"] == pytest.approx(metrics["cls/top1"], abs=1e-6)


def test_a_resume_that_switches_ema_off_is_refused(tiny_config, tmp_path):
    """Resumed with ema.enabled=false, a run trained on from the averaged weights (the
    checkpoint's state_dict) with the raw weights' optimiser state, the raw weights dropped,
    and only Lightning's warning that a callback was missing."""
    ema = ["ema.enabled=true", "ema.decay=0.9", "ema.warmup_steps=0"]
    run_dir, _ = train(tiny_config, ["trainer.max_epochs=1", *ema], output_dir=tmp_path / "run")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"ema\.enabled: True -> False") as info:
        train(
            tiny_config,
            ["trainer.max_epochs=2", "ema.enabled=false"],
            output_dir=run_dir,
            resume=ckpt,
        )
    assert f"start a new run from its weights with model.init_from={ckpt}" in str(info.value)
    train(tiny_config, ["trainer.max_epochs=2", *ema], output_dir=run_dir, resume=ckpt)


def test_early_stopping_ends_the_run_and_its_patience_survives_a_resume(tiny_config, tmp_path):
    # min_delta 10: no validation can improve on the first one, so it stops after 1 + patience
    cfg = ["trainer.max_epochs=8", "early_stopping.patience=2", "early_stopping.min_delta=10"]
    run_dir, _ = train(tiny_config, cfg, output_dir=tmp_path / "run")
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 3
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    stopper = next(v for k, v in ckpt["callbacks"].items() if k.startswith("EarlyStopping"))
    assert stopper["wait_count"] == 2 and stopper["patience"] == 2


def test_early_stopping_without_validation_needs_a_monitor(tiny_config, tmp_path):
    tiny_config["data"].pop("val")
    with pytest.raises(visionkit.errors.ConfigError, match="early_stopping"):
        train(tiny_config, ["early_stopping.patience=2"], output_dir=tmp_path / "run")


def test_compile_trains_and_keeps_parameter_names(tiny_config, tmp_path):
    run_dir, _ = train(
        tiny_config,
        [
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.compile={backend: eager}",
        ],
        output_dir=tmp_path / "run",
    )
    names = list(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"])
    assert names and not any("_orig_mod" in n for n in names)
    assert visionkit.load(run_dir / "checkpoints" / "last.ckpt") is not None


def test_a_run_without_validation_writes_best_and_last_and_resumes(tiny_config, tmp_path):
    tiny_config["data"].pop("val")
    run_dir, metrics = train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "r")
    assert metrics == {}
    assert {p.name for p in (run_dir / "checkpoints").glob("*.ckpt")} == {"best.ckpt", "last.ckpt"}
    train(tiny_config, ["trainer.max_epochs=2", "resume=auto"], output_dir=run_dir)
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 6


def test_a_resume_given_another_image_size_that_reaches_no_step_is_refused(tiny_config, tmp_path):
    """``--resume last.ckpt data.image_size=96`` ran at the old size (the run folder's
    config.yaml has the size written into its steps) and recorded 96 in config.yaml."""
    steps = {"train": [{"name": "Resize"}], "val": [{"name": "Resize"}]}
    tiny_config["data"]["transforms"] = steps
    run_dir, _ = train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "run")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    saved = run_dir / "config.yaml"
    before = saved.read_text()
    assert "{name: Resize, height: 64, width: 64}" in before  # the size written in
    overrides = ["trainer.max_epochs=2", "data.image_size=96"]
    with pytest.raises(ConfigError) as info:
        train(str(saved), overrides, output_dir=run_dir, resume=ckpt)
    text = str(info.value)
    assert text.startswith("invalid configuration")  # not a command-line option's, as it was
    assert f"--resume {ckpt}: data.image_size=96 reaches no transform" in text
    assert f"model.init_from={ckpt}" in text
    assert saved.read_text() == before
    train(str(saved), ["trainer.max_epochs=2"], output_dir=run_dir, resume=ckpt)
    # steps of their own size and no data.image_size given: resumed without a word (the
    # saved config names image_size, the default, which refused every such resume)
    own = [{"name": "Resize", "height": 48, "width": 48}]
    steps = {"train": own, "val": own}
    tiny_config["data"]["transforms"] = steps
    del tiny_config["data"]["image_size"]
    run_dir, _ = train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "own")
    ckpt, saved = run_dir / "checkpoints" / "last.ckpt", run_dir / "config.yaml"
    train(str(saved), ["trainer.max_epochs=2"], output_dir=run_dir, resume=ckpt)
