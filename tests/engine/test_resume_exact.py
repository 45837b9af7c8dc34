"""Mid-epoch resume is exact: a run stopped in the middle of an epoch (SIGTERM, Ctrl-C, a step
checkpoint) and resumed sees the same samples, with the same augmentations, and ends with the
same weights as a run that was not stopped, with or without loader workers; the per-step log
keeps the steps from before a resume, even when the resumed run is killed with SIGKILL."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Checkpoint
from torch.utils.data import DistributedSampler

import visionkit.errors
from visionkit.checkpoint import load_checkpoint
from visionkit.engine import runner
from visionkit.engine.callbacks import StepLog
from visionkit.engine.datamodule import ResumableLoader
from visionkit.engine.resume import RngStateCallback
from visionkit.engine.runner import train
from visionkit.engine.sampling import EpochSampler, SampleKey
from visionkit.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 6  # 48 training images, batches of 8
EPOCHS = 2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine several threads make a step ~5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def config(shapes_root) -> dict:
    """A classifier on the 48 shapes images at 32 px: 6 steps per epoch, 2 epochs; a step
    checkpoint every 5 steps (the last one, step 10, is in the middle of epoch 1)."""
    return {
        "name": "exact",
        "seed": 3,
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"cls": {"name": "linear", "num_classes": None}},
        },
        "data": {
            "train": {
                "format": "coco",
                "images": str(shapes_root / "train"),
                "class_field": "background",
            },
            "image_size": 32,
            "batch_size": 8,
            "num_workers": 0,
        },
        "optimizer": {"name": "adamw", "lr": 0.003},
        "scheduler": {"name": "cosine", "warmup_epochs": 1},
        "trainer": {
            "max_epochs": EPOCHS,
            "accelerator": "cpu",
            "precision": "32-true",
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
            "checkpoint_every_n_steps": 5,
        },
    }


class _Record(L.Callback):
    """Per training step: the image ids of the batch and a hash of its (augmented) pixels."""

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        digest = hashlib.sha1(batch["images"].numpy().tobytes()).hexdigest()
        self.seen.append((trainer.global_step, batch["image_ids"].tolist(), digest))


class _SigtermAt(L.Callback):
    """Sends this process SIGTERM after optimiser step ``step``, as a cluster preempting it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _train(monkeypatch, config, overrides, output_dir, *extra: L.Callback, **kwargs):
    """``train`` with ``extra`` callbacks added to the run's own."""
    own = runner.training_callbacks
    monkeypatch.setattr(runner, "training_callbacks", lambda *a, **k: [*own(*a, **k), *extra])
    try:
        return train(config, overrides, output_dir=output_dir, **kwargs)
    finally:
        monkeypatch.setattr(runner, "training_callbacks", own)


@pytest.fixture(scope="module")
def straight(config, tmp_path_factory):
    """The uninterrupted run: its folder and what each of its 12 steps saw."""
    seen: list = []
    with pytest.MonkeyPatch.context() as mp:
        run_dir, _ = _train(mp, config, [], tmp_path_factory.mktemp("straight"), _Record(seen))
    assert len(seen) == STEPS_PER_EPOCH * EPOCHS
    return run_dir, seen


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-6, msg=name)


def step_log(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every row of ``logs/metrics.csv`` that has ``key``, in file order."""
    rows = csv.DictReader((run_dir / "logs" / "metrics.csv").read_text().splitlines())
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


# --------------------------------------------------------------------------- in process


def test_resume_from_a_mid_epoch_step_checkpoint_continues_the_uninterrupted_run(
    config, straight, tmp_path, monkeypatch
):
    straight_dir, expected = straight
    step_ckpt = straight_dir / "checkpoints" / "step.ckpt"
    assert load_checkpoint(step_ckpt)["global_step"] == 10  # epoch 1, 4 of its 6 batches done
    seen: list = []
    _train(monkeypatch, config, [], tmp_path / "resumed", _Record(seen), resume=step_ckpt)
    assert seen == expected[10:]  # the last 2 batches of epoch 1, not a fresh shuffle
    assert_same_weights(
        straight_dir / "checkpoints" / "last.ckpt", tmp_path / "resumed/checkpoints/last.ckpt"
    )


@pytest.mark.reliability
def test_a_mid_epoch_checkpoint_without_loader_state_resumes_with_a_warning(
    config, straight, tmp_path, monkeypatch, caplog
):
    ckpt = load_checkpoint(straight[0] / "checkpoints" / "step.ckpt")
    ckpt["callbacks"] = {k: v for k, v in ckpt["callbacks"].items() if "LoaderState" not in k}
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)  # as an older visionkit wrote it
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        _train(monkeypatch, config, [], tmp_path / "resumed", resume=old)
    assert (
        f"resume: {old} was written in the middle of epoch 1 (after 4 of its 6 batches) and "
        "holds no training-loader state (an older visionkit wrote it)" in caplog.text
    )


@pytest.mark.reliability
@pytest.mark.parametrize("num_workers", [0, 2])
def test_sigterm_mid_epoch_then_resume_sees_the_same_samples_and_weights(
    config, straight, tmp_path, monkeypatch, num_workers
):
    straight_dir, expected = straight
    run_dir = tmp_path / "run"
    overrides = [f"data.num_workers={num_workers}"]
    seen: list = []
    with pytest.raises(visionkit.errors.TrainingInterrupted, match="--resume") as info:
        _train(monkeypatch, config, overrides, run_dir, _Record(seen), _SigtermAt(3))
    assert info.value.exit_code == 143
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (0, 3)  # the middle of epoch 0

    _train(monkeypatch, config, [*overrides, "resume=auto"], run_dir, _Record(seen))
    # the sample order and the augmented pixels of every step equal those of the
    # uninterrupted run (which had no loader workers: neither depends on them)
    assert [s[1] for s in seen] == [s[1] for s in expected]
    assert seen == expected
    assert_same_weights(
        straight_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints/last.ckpt"
    )
    # the per-step log holds every step once, with the uninterrupted run's losses and rates
    for key in ("train/loss_step", "train/lr"):
        ours, theirs = step_log(run_dir, key), step_log(straight_dir, key)
        assert [s for s, _ in ours] == list(range(STEPS_PER_EPOCH * EPOCHS))
        assert [v for _, v in ours] == pytest.approx([v for _, v in theirs], abs=1e-6)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("when", "every"),
    [
        ("end", {}),
        ("end", {"check_val_every_n_epoch": None, "val_check_interval": STEPS_PER_EPOCH}),
        ("end", {"max_epochs": -1, "max_steps": STEPS_PER_EPOCH * EPOCHS}),
        ("first_batch", {"max_epochs": -1, "max_steps": STEPS_PER_EPOCH * EPOCHS}),
    ],
    ids=["epochs", "val_every_n_steps", "max_steps", "max_steps_mid_validation"],
)
def test_sigterm_in_an_epochs_validation_then_resume_starts_the_next_epoch_whole(
    config, tmp_path, monkeypatch, when, every
):
    """SIGTERM during the validation at an epoch's end (after it, or after its first batch):
    the resumed run sees the samples, weights and step log of the run never stopped. With a
    step budget (``max_steps``) it went through an empty epoch 1 and trained on epoch 2's
    draws: Lightning had counted epoch 0 as done while its loop still held epoch 0's batches."""
    run_dir = tmp_path / "run"
    val = {**config["data"]["train"], "images": config["data"]["train"]["images"][:-5] + "val"}
    with_val = {**config, "data": {**config["data"], "val": val, "batch_size": 8}}
    with_val["trainer"] = {**config["trainer"], "limit_val_batches": 2, **every}
    straight_seen: list = []
    straight_dir, _ = _train(
        monkeypatch, with_val, [], tmp_path / "straight", _Record(straight_seen)
    )
    seen: list = []
    with pytest.raises(visionkit.errors.TrainingInterrupted):
        _train(monkeypatch, with_val, [], run_dir, _Record(seen), _SigtermInValidation(when))
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == STEPS_PER_EPOCH
    _train(monkeypatch, with_val, ["resume=auto"], run_dir, _Record(seen))
    assert seen == straight_seen
    assert_same_weights(
        straight_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints/last.ckpt"
    )

    def training_rows(folder):  # (epoch, step) of every training step's row
        rows = csv.DictReader((folder / "logs" / "metrics.csv").read_text().splitlines())
        return [(r["epoch"], r["step"]) for r in rows if r.get("train/loss_step")]

    assert training_rows(run_dir) == training_rows(straight_dir)  # no empty epoch between


class _SigtermInValidation(L.Callback):
    """SIGTERM during epoch 0's validation: after its first batch, or at its end."""

    def __init__(self, when: str) -> None:
        self.when = when

    def on_validation_batch_end(self, trainer, *args) -> None:
        if (
            self.when == "first_batch"
            and trainer.current_epoch == 0
            and not trainer.sanity_checking
        ):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_end(self, trainer, *args) -> None:
        if self.when == "end" and trainer.current_epoch == 0 and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)


class _CtrlCInValidation(L.Callback):
    """Ctrl-C after the first batch of epoch ``epoch``'s validation (of several batches)."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.sent = epoch, False

    def on_validation_batch_end(self, trainer, *args) -> None:
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def _validated(config: dict) -> dict:
    """``config`` with a validation set of two batches each epoch (and no step checkpoints)."""
    val = {**config["data"]["train"], "images": config["data"]["train"]["images"][:-5] + "val"}
    run = {**config, "data": {**config["data"], "val": val}}
    run["trainer"] = {**config["trainer"], "limit_val_batches": 2, "checkpoint_every_n_steps": None}
    return run


def _epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))


@pytest.mark.reliability
def test_ctrl_c_in_a_validation_stops_after_it_and_keeps_its_metrics(
    config, tmp_path, monkeypatch, caplog
):
    """A Ctrl-C during a validation stopped it after its current batch: its metrics, its
    metrics.csv row and its best.ckpt candidate were lost for good (the resumed run starts
    after it), so metrics.csv had an epoch without validation metrics."""
    run = _validated(config)
    straight_dir, _ = _train(monkeypatch, run, [], tmp_path / "straight")
    run_dir = tmp_path / "run"
    with (
        caplog.at_level(logging.WARNING, logger="visionkit"),
        pytest.raises(visionkit.errors.TrainingInterrupted) as info,
    ):
        _train(monkeypatch, run, [], run_dir, _CtrlCInValidation(epoch=0))
    assert info.value.exit_code == 130
    assert "Ctrl-C: stopping after the current validation" in caplog.text
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == STEPS_PER_EPOCH
    assert _epoch_rows(run_dir) == _epoch_rows(straight_dir)[:1]  # epoch 0 validated whole

    _train(monkeypatch, run, ["resume=auto"], run_dir)
    scored = ("epoch", "step", "cls/top1", "val/loss")
    rows = [{k: r[k] for k in scored} for r in _epoch_rows(run_dir)]
    assert rows == [{k: r[k] for k in scored} for r in _epoch_rows(straight_dir)]


class _CtrlCAsTheValidationEnds(Checkpoint):
    """Ctrl-C in ``on_validation_end`` of epoch 0, as the checkpoints are written: a
    ``Checkpoint`` callback, which Lightning runs after every other (SigtermCheckpoint's
    ``on_validation_end`` included), while its stage still says validating."""

    sent = False

    def on_validation_end(self, trainer, *args) -> None:
        if trainer.current_epoch == 0 and not trainer.sanity_checking and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.reliability
def test_ctrl_c_as_a_validation_ends_stops_there_not_a_validation_later(
    config, tmp_path, monkeypatch
):
    """A Ctrl-C after SigtermCheckpoint's on_validation_end but before Lightning's stage left
    validating (the checkpoints being written) waited for a validation that had ended: the
    run went on to the next one (or to its end) before stopping."""
    run = _validated(config)
    run_dir = tmp_path / "run"
    with pytest.raises(visionkit.errors.TrainingInterrupted) as info:
        _train(monkeypatch, run, [], run_dir, _CtrlCAsTheValidationEnds())
    assert info.value.exit_code == 130
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == STEPS_PER_EPOCH


class _SignalInTheFinalValidation(L.Callback):
    """``signum`` during the validation of best.ckpt once training ended; records the digest
    of ``last`` just before."""

    def __init__(self, signum: int, last: Path) -> None:
        self.signum, self.last, self.digest = signum, last, None

    def on_validation_batch_end(self, trainer, *args) -> None:
        if trainer.state.fn == "validate" and self.digest is None:
            self.digest = hashlib.sha1(self.last.read_bytes()).hexdigest()
            os.kill(os.getpid(), self.signum)


@pytest.mark.reliability
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_in_the_final_validation_keeps_last_ckpt_and_says_how_to_finish(
    config, tmp_path, monkeypatch, signum, status
):
    """SIGTERM in the validation of best.ckpt after training ended exited with status 0 (a
    cluster took the job for done) without metrics.json, having overwritten last.ckpt with the
    validation's model (best.ckpt's weights); Ctrl-C there exited 1 with Lightning's "attempting
    graceful shutdown" alone."""
    run = _validated(config)
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    poke = _SignalInTheFinalValidation(signum, last)
    # Python's own Ctrl-C handler, as in a terminal (an earlier test of the process may have
    # left SIGINT ignored: Lightning ignores it once it has handled one)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(visionkit.errors.TrainingInterrupted, match="--resume") as info:
            _train(monkeypatch, run, [], run_dir, poke)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert info.value.exit_code == status and info.value.checkpoint == str(last)
    assert after is signal.default_int_handler  # not left ignored
    assert hashlib.sha1(last.read_bytes()).hexdigest() == poke.digest
    assert not (run_dir / "metrics.json").exists()
    _, metrics = _train(monkeypatch, run, [], run_dir, resume=last)
    assert "cls/top1" in metrics and (run_dir / "metrics.json").is_file()


@pytest.mark.reliability
@pytest.mark.parametrize("batch_size", [4, 16, 32])
def test_a_mid_epoch_resume_with_another_batch_size_still_validates_that_epoch(
    config, tmp_path, monkeypatch, batch_size
):
    """The rest of the epoch at another batch size is not the batches Lightning counted as
    left: the epoch ended before its last index and its validation (and a best.ckpt
    candidate) was skipped. Smaller and larger batches; at 32 one batch is left."""
    val = {**config["data"]["train"], "images": config["data"]["train"]["images"][:-5] + "val"}
    run = {**config, "data": {**config["data"], "val": val}}
    run["trainer"] = {**config["trainer"], "limit_val_batches": 2}
    first, _ = _train(monkeypatch, run, [], tmp_path / "first")
    step_ckpt = first / "checkpoints" / "step.ckpt"
    assert load_checkpoint(step_ckpt)["global_step"] == 10  # epoch 1, 4 of its 6 batches
    resumed, _ = _train(
        monkeypatch,
        run,
        [f"data.batch_size={batch_size}"],
        tmp_path / "resumed",
        resume=step_ckpt,
    )
    rows = csv.DictReader((resumed / "metrics.csv").read_text().splitlines())
    validated = {int(r["epoch"]) for r in rows if r.get("cls/top1")}
    assert 1 in validated


@pytest.mark.reliability
def test_a_resumed_run_reports_the_training_time_of_the_whole_run(
    config, tmp_path, monkeypatch, caplog
):
    """metrics.json's time/train_s counted the resumed process alone (a run stopped near its
    end and resumed said it trained for a few seconds)."""
    run_dir = tmp_path / "run"
    val = {**config["data"]["train"], "images": config["data"]["train"]["images"][:-5] + "val"}
    config = {**config, "data": {**config["data"], "val": val}}
    config["trainer"] = {**config["trainer"], "limit_val_batches": 2}
    with pytest.raises(visionkit.errors.TrainingInterrupted):
        _train(monkeypatch, config, [], run_dir, _SigtermAt(STEPS_PER_EPOCH + 3))
    saved = next(
        v
        for k, v in load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["callbacks"].items()
        if k.startswith("TrainingTime")
    )
    assert saved["time/train_s"] > 0 and saved["time/val_s"] >= 0
    with caplog.at_level(logging.INFO, logger="visionkit"):
        _, metrics = _train(monkeypatch, config, ["resume=auto"], run_dir)
    assert metrics["time/train_s"] > saved["time/train_s"]
    # what the log said as training ended: the final validate(ckpt_path=best.ckpt) reloads
    # the callbacks' state, and best.ckpt's time was counted a second time
    minutes, seconds = re.search(r"training took (\d+) min ([\d.]+) s", caplog.text).groups()
    assert metrics["time/train_s"] == pytest.approx(60 * int(minutes) + float(seconds), abs=0.06)
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["time/train_s"] == pytest.approx(metrics["time/train_s"])


class _CtrlCTwiceAt(L.Callback):
    """Ctrl-C twice in the batch after optimiser step ``step`` (the second before the batch
    ends), as an impatient user at a terminal."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.reliability
def test_a_second_ctrl_c_stops_at_once_and_names_the_checkpoint_to_continue_from(
    config, tmp_path, monkeypatch
):
    """A second Ctrl-C was Lightning's "attempting graceful shutdown" and exit status 1, and
    SIGINT stayed ignored: now exit status 130 and the run's last checkpoint from before."""
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(visionkit.errors.TrainingInterrupted) as info:
        _train(monkeypatch, config, [], tmp_path / "run", _CtrlCTwiceAt(STEPS_PER_EPOCH + 2))
    error = info.value
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert error.exit_code == 130 and error.checkpoint == str(last)
    assert load_checkpoint(last)["global_step"] == STEPS_PER_EPOCH  # epoch 0's, not a new one
    assert str(error) == (
        f"a second Ctrl-C (SIGINT) at epoch 1, step {STEPS_PER_EPOCH + 2}: ended at once, "
        f"without saving; its last checkpoint is {last}, from before. Continue with: "
        f"visionkit train --resume {last}"
    )
    assert signal.getsignal(signal.SIGINT) is before


class _CrashAt(L.Callback):
    """A crash (an exception, as a killed process leaves the run) before step ``step``: the
    run's last checkpoint is then the one its ``last.ckpt`` callback wrote at epoch 0's end."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("crash")


@pytest.mark.reliability
@pytest.mark.parametrize(
    "every",
    [{}, {"max_epochs": -1, "max_steps": STEPS_PER_EPOCH * EPOCHS}, "val"],
    ids=["epochs", "max_steps", "with_validation"],
)
def test_resume_from_an_epoch_end_last_ckpt_continues_the_uninterrupted_run(
    config, tmp_path, monkeypatch, every
):
    """``last.ckpt`` written at an epoch's end (what a crash, SIGKILL or a second Ctrl-C
    leaves): the resumed run trained on the epoch after next's order (Lightning counted the
    finished epoch as processed twice, and the samplers follow that count)."""
    run = {**config, "trainer": {**config["trainer"], "checkpoint_every_n_steps": None}}
    if every == "val":
        val = {**config["data"]["train"], "images": config["data"]["train"]["images"][:-5] + "val"}
        run["data"] = {**config["data"], "val": val}
        run["trainer"]["limit_val_batches"] = 2
    else:
        run["trainer"].update(every)
    straight_seen: list = []
    straight_dir, _ = _train(monkeypatch, run, [], tmp_path / "straight", _Record(straight_seen))
    seen: list = []
    with pytest.raises(RuntimeError, match="crash"):
        _train(monkeypatch, run, [], tmp_path / "run", _Record(seen), _CrashAt(STEPS_PER_EPOCH + 2))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == STEPS_PER_EPOCH
    seen = seen[:STEPS_PER_EPOCH]
    _train(monkeypatch, run, [], tmp_path / "resumed", _Record(seen), resume=last)
    assert [s[1] for s in seen] == [s[1] for s in straight_seen]
    assert seen == straight_seen
    assert_same_weights(
        straight_dir / "checkpoints" / "last.ckpt", tmp_path / "resumed/checkpoints/last.ckpt"
    )


# --------------------------------------------------------------------------- real signals


def _write_config(config: dict, tmp_path: Path, **trainer) -> Path:
    cfg = {**config, "trainer": {**config["trainer"], **trainer}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start_training(config: Path, run_dir: Path, *overrides: str) -> subprocess.Popen:
    """``visionkit train`` in its own process group (a terminal's Ctrl-C reaches the group)."""
    cmd = [sys.executable, "-m", "visionkit.cli", "train", "--config", str(config)]
    cmd += ["--output-dir", str(run_dir), *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_step(proc: subprocess.Popen, path: Path, step: int, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if path.is_file():
            try:
                if load_checkpoint(path)["global_step"] >= step:
                    return
            except CheckpointError:
                pass  # being replaced right now: the rename is atomic, try again
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"{path} did not reach step {step} in {timeout} s")


def _freeze_where_the_checkpoint_is_logged(proc: subprocess.Popen, run_dir: Path) -> None:
    """Stop (SIGSTOP) the run at a moment when the last batch of ``step.ckpt`` has its row in
    ``logs/metrics.csv``. Lightning writes a batch's row just after that batch's checkpoint;
    a SIGKILL in between loses the row, which the resumed run cannot log again (StepLog's
    docstring), so the kill must not fall there for "every step once" to hold."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            saved = load_checkpoint(run_dir / "checkpoints" / "step.ckpt")["global_step"]
            if step_log(run_dir, "train/loss_step")[-1][0] >= saved - 1:
                return
        except (CheckpointError, ValueError, KeyError, IndexError):
            pass  # stopped in the middle of a write
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("no moment found where step.ckpt's last batch was logged")


@pytest.mark.reliability
def test_ctrl_c_saves_last_ckpt_mid_epoch_and_the_run_resumes(config, tmp_path, monkeypatch):
    cfg = _write_config(config, tmp_path, max_epochs=50, checkpoint_every_n_steps=1)
    run_dir = tmp_path / "run"
    proc = _start_training(cfg, run_dir, "data.num_workers=2")
    _wait_for_step(proc, run_dir / "checkpoints" / "step.ckpt", 2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Ctrl-C: stopping after the current training batch" in err
    assert "stopped: interrupted by Ctrl-C (SIGINT)" in err and "--resume" in err
    assert "Traceback" not in err
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    stopped = last["global_step"]
    assert stopped >= 2
    loader = next(v for k, v in last["callbacks"].items() if k.startswith("LoaderState"))
    # the training loader's place: the batches of this epoch done (all 6 at an epoch end)
    assert loader["train"]["draws"] == ((stopped - 1) % STEPS_PER_EPOCH + 1) * 8

    epochs = last["epoch"] + 1
    _train(monkeypatch, config, [f"trainer.max_epochs={epochs}", "resume=auto"], run_dir)
    total = STEPS_PER_EPOCH * epochs
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == total
    # the per-step log kept the steps from before Ctrl-C: every step is there, once
    assert [s for s, _ in step_log(run_dir, "train/loss_step")] == list(range(total))


@pytest.mark.reliability
def test_the_step_log_survives_sigkill_of_a_resumed_run(config, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _train(monkeypatch, config, ["trainer.max_epochs=1"], run_dir)
    before = step_log(run_dir, "train/loss_step")
    assert [s for s, _ in before] == list(range(STEPS_PER_EPOCH))

    cfg = _write_config(config, tmp_path, max_epochs=50, checkpoint_every_n_steps=1)
    proc = _start_training(cfg, run_dir, "resume=auto")
    _wait_for_step(proc, run_dir / "checkpoints" / "step.ckpt", STEPS_PER_EPOCH + 2)
    _freeze_where_the_checkpoint_is_logged(proc, run_dir)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    after_kill = step_log(run_dir, "train/loss_step")
    assert after_kill[: len(before)] == before  # the rows from before the resume are intact
    assert len(after_kill) >= len(before) + 2  # and the killed run's rows were appended

    last = load_checkpoint(run_dir / "checkpoints" / "step.ckpt")
    epochs = last["epoch"] + 1
    _train(monkeypatch, config, [f"trainer.max_epochs={epochs}", "resume=auto"], run_dir)
    steps = [s for s, _ in step_log(run_dir, "train/loss_step")]
    assert steps == list(range(STEPS_PER_EPOCH * epochs))  # each step once, in order


# --------------------------------------------------------------------------- the parts


def test_a_fresh_epoch_is_distributed_samplers_order_and_depends_on_seed_and_epoch_only():
    for rank in (0, 1):
        ours = EpochSampler(range(11), seed=5, rank=rank, world_size=2)
        theirs = DistributedSampler(range(11), 2, rank, shuffle=True, seed=5)
        for epoch in (0, 3):
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)
            assert len(ours) == len(theirs) == 6  # 11 draws padded to 12
    a, b = EpochSampler(range(20), seed=1), EpochSampler(range(20), seed=1)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # no random state is read
    assert list(b) == first
    b.set_epoch(1)
    assert list(b) != first


def test_resume_at_skips_the_consumed_draws_on_every_rank_and_keys_each_draw():
    ranks = [EpochSampler(range(11), seed=2, rank=r, world_size=2) for r in (0, 1)]
    order = ranks[0].order(0)
    for sampler in ranks:
        sampler.resume_at(0, 4)
    rest = [list(s) for s in ranks]
    assert [int(i) for i in rest[0]] == order[4::2] and [int(i) for i in rest[1]] == [
        *order[5::2],
        order[4],  # padding repeats the front of what is left, as DistributedSampler does
    ]
    draws = [k.seed_keys for share in rest for k in share]
    assert len(set(draws)) == len(draws) == 8  # a padded repeat has its own augmentations
    assert all(k[:2] == (2, 0) for k in draws)
    assert [int(i) for i in ranks[0]] == order[0::2]  # the next pass starts afresh

    sampler = EpochSampler(range(11), seed=2)
    sampler.resume_at(0, 5)
    sampler.set_epoch(1)  # the checkpoint closed epoch 0: epoch 1 starts at its beginning
    assert len(list(sampler)) == 11

    key = pickle.loads(pickle.dumps(SampleKey(7, (2, 0, 9))))  # to a loader worker and back
    assert key == 7 and key.seed_keys == (2, 0, 9) and isinstance(key, SampleKey)


def test_a_weighted_epoch_draws_only_from_the_weighted_samples():
    sampler = EpochSampler(range(6), seed=0, weights=[0, 0, 1, 1, 0, 0])
    assert set(map(int, sampler)) <= {2, 3} and len(sampler) == 6


@pytest.mark.reliability
def test_a_loader_resumed_with_another_batch_size_continues_the_order_and_says_what_changed(
    caplog,
):
    loader = ResumableLoader(range(20), batch_size=4, sampler=EpochSampler(range(20), seed=0))
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    assert (state["epoch"], state["draws"]) == (0, 8)
    order = loader.sampler.order(0)

    again = ResumableLoader(range(20), batch_size=5, sampler=EpochSampler(range(20), seed=0))
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        again.load_state_dict(state)
        rest = torch.cat(list(again)).tolist()
    assert (
        "resume: the checkpoint was written in the middle of epoch 0 (8 samples drawn) and "
        "since then batch_size 4 -> 5 changed: the rest of that epoch is not exactly the "
        "interrupted run's" in caplog.text
    )
    assert rest == order[8:]


def test_the_step_log_keeps_the_rows_before_the_resumed_step_and_rewrites_atomically(tmp_path):
    log = tmp_path / "logs" / "metrics.csv"
    log.parent.mkdir()
    log.write_text("step,train/loss\n0,1.0\n1,0.9\n2,0.8\n3,0.7\n")  # the killed run got to 3
    logger = StepLog(tmp_path, resume_step=2)
    logger.log_metrics({"train/loss": 0.75}, step=2)
    assert log.read_text().splitlines() == ["step,train/loss", "0,1.0", "1,0.9", "2,0.75"]
    logger.log_metrics({"train/loss": 0.6, "val/loss": 1.5}, step=3)  # a new column
    assert log.read_text().splitlines()[0] == "step,train/loss,val/loss"
    assert log.read_text().splitlines()[-1] == "3,0.6,1.5"
    assert sorted(p.name for p in log.parent.iterdir()) == ["metrics.csv"]  # no temp file

    StepLog(tmp_path).log_metrics({"train/loss": 2.0}, step=0)  # a new run: a new file
    assert log.read_text().splitlines() == ["step,train/loss", "0,2.0"]


# --------------------------------------------------------------------------- DDP random states


def _rng_worker(rank: int, store: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    torch.manual_seed(100 + rank)  # every rank's own stream, as after some training
    torch.rand(3)
    own = torch.get_rng_state()
    state = RngStateCallback().state_dict()  # a collective: every rank builds the checkpoint
    torch.save({"own": own, "gathered": state}, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


@pytest.mark.reliability
def test_ddp_checkpoints_hold_every_ranks_random_state_and_each_rank_gets_its_own(tmp_path, caplog):
    ctx = multiprocessing.get_context("fork")  # the children inherit this process's imports
    store, out = f"file://{tmp_path / 'store'}", str(tmp_path / "state")
    procs = [ctx.Process(target=_rng_worker, args=(r, store, out)) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    saved = [torch.load(f"{out}.{r}", weights_only=False) for r in (0, 1)]
    ranks = saved[0]["gathered"]["ranks"]  # what rank 0 writes to the checkpoint
    assert len(ranks) == 2
    for r in (0, 1):
        assert torch.equal(ranks[r]["torch"], saved[r]["own"])
    assert not torch.equal(ranks[0]["torch"], ranks[1]["torch"])

    before = torch.get_rng_state()
    try:
        callback = RngStateCallback()
        callback.load_state_dict(saved[0]["gathered"])
        callback.on_train_start(SimpleNamespace(global_rank=1, world_size=2), None)
        assert torch.equal(torch.get_rng_state(), saved[1]["own"])  # rank 1 gets its own

        callback.load_state_dict(saved[0]["gathered"])
        with caplog.at_level(logging.WARNING, logger="visionkit"):
            callback.on_train_start(SimpleNamespace(global_rank=0, world_size=3), None)
        assert (
            "resume: the checkpoint holds the random states of 2 process(es) and this run has "
            "3: ranks 2..2 start from the seeded state" in caplog.text
        )
    finally:
        torch.set_rng_state(before)
