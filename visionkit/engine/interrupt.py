"""Stopping a run so that it can be resumed: SIGTERM (preemption) and Ctrl-C.

- :class:`SigtermCheckpoint` writes ``checkpoints/last.ckpt`` when the run receives SIGTERM or
  a first Ctrl-C (:class:`CtrlC`); Lightning stops the loop after the current training batch
  (a Ctrl-C during a validation: after the validation), and
  :func:`~visionkit.engine.runner.train` exits with :class:`~visionkit.errors.TrainingInterrupted`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from visionkit.checkpoint import write_atomic
from visionkit.errors import TrainingInterrupted

logger = logging.getLogger(__name__)


class SigtermCheckpoint(L.Callback):
    """On SIGTERM (preemption) or a first Ctrl-C (:class:`CtrlC`), save ``path`` so that
    ``--resume`` continues from here.

    Lightning stops the loop after the current training batch (the checkpoint is then at a
    step boundary: mid-epoch, the training loader's state says which samples are left)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.saved = False
        self.validating = False  # inside a validation of the run (not its sanity check)
        self.after_validation = False  # a Ctrl-C during a validation: stop once it ends
        self.during = ""  # saved in a validation: which, for the message

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validating = not trainer.sanity_checking

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A Ctrl-C during a validation of the run takes effect when the validation ends, so
        that its metrics, its ``metrics.csv`` row and its ``best.ckpt`` candidate are kept
        (Lightning stops a validation after its current batch, and the resumed run starts
        after it: the validation was never done)."""
        # Ctrl-C after this (the checkpoints of the validation still being written, Lightning
        # still "validating"): stop after the next training batch (CtrlC._handle)
        self.validating = False
        if self.after_validation:
            self.after_validation = False
            trainer._signal_connector.received_sigterm = True  # Lightning's own stop flag

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # (not in the validation of best.ckpt once training ended: last.ckpt is final, and
        # the validation's model holds best.ckpt's weights)
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            # (EMACallback, an earlier callback, has swapped the averaged weights back out)
            trainer.save_checkpoint(self.path, weights_only=False)  # all, to resume
            self.saved = True
            if self.validating:  # SIGTERM: Lightning stopped it after its current batch
                self.during = (
                    f"during the validation of epoch {trainer.current_epoch}, which stopped "
                    "after its current batch (its metrics were not recorded)"
                )
            logger.warning(
                "stopped at epoch %d, step %d%s: saved %s",
                trainer.current_epoch,
                trainer.global_step,
                f" {self.during}" if self.during else "",
                self.path,
            )


class CtrlC:
    """While training, the first Ctrl-C (SIGINT) stops the run as SIGTERM does: the current
    training batch (or validation: :meth:`SigtermCheckpoint.on_validation_end`) finishes,
    :class:`SigtermCheckpoint` saves ``last.ckpt`` and the run ends
    with :class:`~visionkit.errors.TrainingInterrupted` (exit status 130). A second Ctrl-C
    stops at once, without saving (Lightning's ``KeyboardInterrupt`` handling, whose
    ``sys.exit(1)`` becomes a ``TrainingInterrupted`` naming the run's last checkpoint).

    A context manager around ``trainer.fit``, which turns Lightning's ``SIGTERMException``
    after :class:`SigtermCheckpoint` saved into a ``TrainingInterrupted`` (SIGTERM: exit status
    143); the handler is only installed in the main thread
    (Python runs signal handlers there). Under DDP rank 0's flag is broadcast by Lightning
    before every batch, so every rank stops after the same batch."""

    def __init__(self, trainer: L.Trainer, sigterm: SigtermCheckpoint) -> None:
        self.trainer = trainer
        self.sigterm = sigterm
        self.path = sigterm.path
        self.pressed = False
        self.forced = False  # a second Ctrl-C: stopped at once
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        # Lightning exits on a KeyboardInterrupt; one raised while it saves (in its handler
        # of other exceptions) comes through as it is
        if self.forced and isinstance(error, SystemExit | KeyboardInterrupt):
            written = [c for c in self.path.parent.glob("*.ckpt") if c.name != "best.ckpt"]
            raise TrainingInterrupted(
                max(written, key=lambda c: c.stat().st_mtime, default=None),
                self.trainer.current_epoch,
                self.trainer.global_step,
                signal="SIGINT",
                saved=False,
            ) from None
        if isinstance(error, SIGTERMException) and self.sigterm.saved:
            raise TrainingInterrupted(
                self.path,
                self.trainer.current_epoch,
                self.trainer.global_step,
                signal="SIGINT" if self.pressed else "SIGTERM",
                during=self.sigterm.during,
            ) from None

    def _handle(self, signum: int, frame: Any) -> None:
        connector = getattr(self.trainer, "_signal_connector", None)
        if self.pressed or connector is None or not hasattr(connector, "received_sigterm"):
            self.forced = self.pressed
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.pressed = True
        validating = self.sigterm.validating  # (Lightning's flag outlasts on_validation_end)
        if validating:  # Lightning would stop the validation after its current batch
            self.sigterm.after_validation = True
        else:
            connector.received_sigterm = True  # Lightning's own stop-after-this-batch flag
        logger.warning(
            "Ctrl-C: stopping after the current %s and saving %s "
            "(press Ctrl-C again to stop at once without saving)",
            "validation" if validating else "training batch",
            self.path,
        )


@contextmanager
def interrupted_after_training(trainer: L.Trainer, last: Path) -> Iterator[None]:
    """Around the validation of ``best.ckpt`` once training has ended: a SIGTERM or Ctrl-C
    there, which Lightning ends with a ``SystemExit`` (status 0 for SIGTERM, as if the run had
    succeeded; 1 for Ctrl-C, saying nothing of what to do), is a :class:`TrainingInterrupted`
    naming ``last``, whose resume runs that validation and writes ``metrics.json``. Lightning
    leaves Ctrl-C ignored after one: the handler of before is put back."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as stop:
        raise TrainingInterrupted(
            last,
            trainer.current_epoch,
            trainer.global_step,
            signal="SIGTERM" if isinstance(stop, SIGTERMException) else "SIGINT",
        ) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


#: The file of a run folder that says how to continue a stopped run (removed when it does).
STOPPED_NOTE = "STOPPED.txt"
_HEADER = "visionkit: this run was stopped"


@contextmanager
def stop_noted(run_dir: Path, resumed_from: Path | None = None) -> Iterator[None]:
    """Around a run's training: a :class:`~visionkit.errors.TrainingInterrupted` writes
    ``<run_dir>/STOPPED.txt`` (what stopped the run, where, and the command that continues it);
    a run in the folder (the resumed one) removes the note of before, only a note written
    here (a file of the user's of that name stays). A run resumed in another folder from
    ``resumed_from`` (``<old run>/checkpoints/last.ckpt``) rewrites the old folder's note to
    say where it went on, so that it no longer offers to continue it a second time. Rank 0
    only."""
    note = Path(run_dir) / STOPPED_NOTE
    zero = rank_zero_only.rank == 0
    if zero and _ours(note):
        note.unlink()
    old = _run_folder_of(resumed_from)
    if zero and old is not None and old.resolve() != Path(run_dir).resolve():
        _note_continued(old / STOPPED_NOTE, Path(run_dir), Path(resumed_from))
    try:
        yield
    except TrainingInterrupted as stop:
        if zero and stop.checkpoint is not None:
            text = f"{_HEADER}: {stop}\n"
            write_atomic(note, lambda tmp: tmp.write_text(text))
        raise


def _ours(note: Path) -> bool:
    """Whether ``note`` is a STOPPED.txt this module wrote."""
    try:
        return note.is_file() and note.read_text(errors="replace").startswith(_HEADER)
    except OSError:
        return False


def _run_folder_of(checkpoint: Path | None) -> Path | None:
    """The run folder of a ``<run>/checkpoints/*.ckpt`` file, else ``None``."""
    if checkpoint is None or Path(checkpoint).parent.name != "checkpoints":
        return None
    return Path(checkpoint).parent.parent


def _note_continued(note: Path, run_dir: Path, checkpoint: Path) -> None:
    """Rewrite the stopped run's ``note`` (one of ours) to say it went on in ``run_dir`` from
    ``checkpoint``; a folder that cannot be written keeps its note, logged."""
    if not _ours(note):
        return
    first = note.read_text(errors="replace").splitlines()[0]
    stopped = first[len(_HEADER) :].lstrip(": ").split("; ")[0]  # "interrupted by ... at ..."
    text = f"{_HEADER}: {stopped}; it went on in {run_dir} (resumed from {checkpoint})\n"
    try:
        write_atomic(note, lambda tmp: tmp.write_text(text))
    except OSError as err:
        logger.warning(
            "%s still says how to continue the run (%s); it went on in %s", note, err, run_dir
        )
