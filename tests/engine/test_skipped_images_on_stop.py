"""Images skipped under ``on_bad_image: skip`` are reported when a run stops mid-epoch: the
report came at the epoch's end only, and an epoch that died (an exception in the loop, Ctrl-C,
SIGTERM) took the count of what it had skipped with it."""

from __future__ import annotations

import logging
import os
import signal

import lightning as L
import pytest

from visionkit.data.synthetic import make_shapes
from visionkit.engine.runner import train
from visionkit.errors import TrainingInterrupted


class Fail(L.Callback):
    """Raises after training batch ``at`` (before the epoch's end)."""

    def __init__(self, at: int, error: BaseException) -> None:
        self.at, self.error = at, error

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.at:
            raise self.error


@pytest.fixture()
def bad_config(tiny_config, tmp_path, request):
    root = tmp_path / "shapes"
    make_shapes(root, num_images=16, size=32, seed=3)
    bad = sorted(root.rglob("*.png"))[: request.param if hasattr(request, "param") else 3]
    for path in bad:
        path.write_bytes(path.read_bytes()[:60])  # its header read, its pixels cut off
    tiny_config["data"]["train"].update(images=str(root), on_bad_image="skip")
    tiny_config["data"].update(batch_size=8, image_size=32)
    tiny_config["trainer"].update(max_epochs=1)
    return tiny_config, bad


def test_an_exception_mid_epoch_reports_the_images_skipped_so_far(bad_config, caplog):
    config, bad = bad_config
    with (
        caplog.at_level(logging.WARNING, logger="visionkit"),
        pytest.raises(RuntimeError, match="boom"),
    ):
        train(config, callbacks=[Fail(1, RuntimeError("boom"))])
    said = [
        r.getMessage() for r in caplog.records if "unreadable images were skipped" in r.getMessage()
    ]
    assert len(said) == 1, said
    assert "unreadable images were skipped before the run stopped (3 files: " in said[0]
    assert all(path.name in said[0] for path in bad)


def test_what_the_epoch_end_reported_is_not_reported_again(bad_config, caplog):
    """Stopped in the second epoch before any skip of it: nothing more to say."""
    config, _ = bad_config
    config["trainer"].update(max_epochs=2)
    with (
        caplog.at_level(logging.WARNING, logger="visionkit"),
        pytest.raises(RuntimeError, match="boom"),
    ):
        train(config, callbacks=[FailInEpoch(1, RuntimeError("boom"))])
    said = [
        r.getMessage() for r in caplog.records if "unreadable images were skipped" in r.getMessage()
    ]
    assert len(said) == 1 and "this epoch" in said[0], said


class FailInEpoch(L.Callback):
    """Raises at the start of epoch ``epoch`` (nothing read of it yet)."""

    def __init__(self, epoch: int, error: BaseException) -> None:
        self.epoch, self.error = epoch, error

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise self.error


class Sigterm(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("bad_config", [12], indirect=True)  # the first batch skips some
def test_a_sigterm_mid_epoch_reports_the_images_skipped_so_far(bad_config, caplog):
    config, _ = bad_config
    with caplog.at_level(logging.WARNING, logger="visionkit"), pytest.raises(TrainingInterrupted):
        train(config, callbacks=[Sigterm()])
    said = [
        r.getMessage() for r in caplog.records if "unreadable images were skipped" in r.getMessage()
    ]
    assert len(said) == 1 and "before the run stopped" in said[0], said
