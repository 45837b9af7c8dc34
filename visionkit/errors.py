"""Typed errors. Each carries what went wrong, where, and what was expected.

The CLI prints these without a traceback and exits non-zero: 2 for a mistake in what the
user wrote (configuration errors, a backbone that cannot be built as asked, an unknown name),
1 otherwise (data, files, the run itself).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any


def key_path(parts: Sequence[Any]) -> str:
    """A config key path as every error names it, a list item by its index in brackets, the
    form overrides take (``data.transforms.train[2].p=1``; ``train.2.p`` too):
    ``("data", "transforms", "train", 2, "p")`` → ``"data.transforms.train[2].p"``.

    >>> key_path(["optimizer", "betas", 1]), key_path(["a", 0, 1])
    ('optimizer.betas[1]', 'a[0][1]')
    """
    return "".join(
        f"[{p}]" if isinstance(p, int) and not isinstance(p, bool) else f".{p}" for p in parts
    ).lstrip(".")


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless it is one: ``counted(1, "image")`` is
    ``"1 image"``, ``counted(3, "class")`` ``"3 classes"``.

    >>> counted(1, "problem"), counted(2, "problem"), counted(0, "class")
    ('1 problem', '2 problems', '0 classes')
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}{'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's'}"


class VisionkitError(Exception):
    """Base class of every error visionkit raises on purpose."""

    exit_code = 1
    label = "error"  # what the command line prints before the message
    # raised alike by every process of a distributed run: the command line prints it once,
    # from rank 0 (any other error is printed by the process that has it)
    every_rank = False


class ConfigError(VisionkitError):
    """An invalid configuration: one line per problem, each naming the full key path;
    ``locations`` holds, per problem, the ``FILE:LINE`` that writes its key (or ``None``),
    which the message puts before it. ``options=True``: the problems are of a command's
    options (``--val 0``), headed "invalid command-line option", not the config's; said where
    the error is raised, never guessed from the text (a config problem may name an option).
    ``call``: the problems are of the arguments of that library function (``model.predict(
    imgsz="big")``), headed "invalid argument of predict()" (:func:`arguments_of`); the
    command line that called it with its options heads them as options.

    >>> str(ConfigError("--n: expected at least 1, got 0", options=True)).splitlines()[0]
    'invalid command-line option:'
    """

    exit_code = 2

    def __init__(
        self,
        problems: Sequence[str] | str,
        source: str | None = None,
        locations: Sequence[str | None] = (),
        *,
        options: bool = False,
        call: str = "",
    ) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.options = options
        self.call = call
        self.locate(source, locations)

    def locate(self, source: str | None, locations: Sequence[str | None]) -> ConfigError:
        """This error said of the config file ``source``, each problem at its ``locations``
        (``FILE:LINE`` or ``None``): how a check made after the config was loaded (the data
        against the heads) names the file and line of its key, as the loader's own."""
        self.source = source
        self.locations = [*locations, *[None] * len(self.problems)][: len(self.problems)]
        where = f" in {source}" if source else ""
        lines = "\n".join(
            f"  {place}: {p}" if place else f"  {p}"
            for p, place in zip(self.problems, self.locations, strict=True)
        )
        what = "invalid command-line option" if self.options else "invalid configuration"
        what = f"invalid argument of {self.call}()" if self.call and not self.options else what
        self.args = (f"{what}{where}:\n{lines}",)
        return self


@contextlib.contextmanager
def arguments_of(call: str) -> Iterator[None]:
    """A :class:`ConfigError` raised inside (by the checks of a function's arguments, which
    name each argument: ``imgsz (--imgsz): ...``) is headed as an invalid argument of
    ``call``, not an invalid configuration; one of options, of a config file or of another
    call is left as it is."""
    try:
        yield
    except ConfigError as err:
        if not (err.options or err.source or err.call):
            err.call = call
            err.locate(err.source, err.locations)
        raise


class DataError(VisionkitError):
    """A dataset problem; ``problems`` lists every offender (the first 10 shown, then a count),
    ``hints`` what to change (shown last, ``hint: ...``).

    ``report`` is the :class:`visionkit.data.checks.DataReport` the error was made from, when
    it comes from a dataset check (``None`` otherwise).
    """

    report: Any = None

    def __init__(
        self,
        message: str,
        problems: Sequence[str] = (),
        max_shown: int = 10,
        hints: Sequence[str] = (),
    ) -> None:
        self.message = message
        self.problems = list(problems)
        shown = "".join(f"\n  {p}" for p in self.problems[:max_shown])
        more = len(self.problems) - max_shown
        if more > 0:
            shown += f"\n  ... and {more} more"
        shown += "".join(f"\n  hint: {hint}" for hint in hints)
        super().__init__(message + shown)


class AnnotationError(DataError):
    """An annotation file that is malformed or inconsistent (ids, categories, sizes)."""


class SampleError(DataError):
    """Reading or transforming one sample failed; the message names the sample index, the
    image id and the file.

    It survives the trip from a ``DataLoader`` worker process: torch re-creates the exception
    in the main process from one string, ``"Caught SampleError in DataLoader worker process
    N. Original Traceback ...: <module>.SampleError: <message>"``, which is cut back here to
    the original message, so no worker traceback reaches the user.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        if message.startswith("Caught ") and marker in message:
            message = message[message.rindex(marker) + len(marker) :].rstrip("\n")
        super().__init__(message)


class ImageDecodeError(DataError):
    """An image that cannot be read; names the file and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class CheckpointError(VisionkitError):
    """A checkpoint that cannot be loaded (missing, truncated, unsafe, wrong format).
    ``message`` replaces "cannot load checkpoint PATH: reason" where that would mislead (a
    published file that was never downloaded is not a broken checkpoint)."""

    def __init__(self, path: object, reason: str, message: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(message or f"cannot load checkpoint {self.path}: {reason}")


class TrainingInterrupted(VisionkitError):
    """The run received SIGTERM or Ctrl-C (``signal="SIGINT"``); a checkpoint was saved and
    the run can be resumed. ``saved=False``: a second Ctrl-C stopped it at once; ``checkpoint``
    is then the run's last one from before (``None`` when it wrote none)."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM
    label = "stopped"  # what the command line prints before the message (not "error")
    every_rank = True  # a terminal's Ctrl-C, a scheduler's SIGTERM reach every process

    def __init__(
        self,
        checkpoint: object,
        epoch: int,
        step: int,
        signal: str = "SIGTERM",
        saved: bool = True,
        during: str = "",
    ) -> None:
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.epoch = epoch
        self.step = step
        self.signal = signal
        what = "SIGTERM"
        if signal == "SIGINT":
            self.exit_code, what = 130, "Ctrl-C (SIGINT)"  # 128 + SIGINT, as a shell reports
        if saved:
            text = f"interrupted by {what} at epoch {epoch}, step {step}"
            text += f" {during}" if during else ""
            text += f"; saved {self.checkpoint}"
        else:
            text = f"a second {what} at epoch {epoch}, step {step}: ended at once, without saving; "
            text += (
                "the run wrote no checkpoint to continue from"
                if self.checkpoint is None
                else f"its last checkpoint is {self.checkpoint}, from before"
            )
        if self.checkpoint is not None:
            text += f". Continue with: visionkit train --resume {self.checkpoint}"
        super().__init__(text)


class NonFiniteLossError(VisionkitError):
    """The training loss became NaN or infinite; names the step and each head's loss."""

    def __init__(self, step: int, epoch: int, losses: dict[str, float]) -> None:
        self.step = step
        self.epoch = epoch
        self.losses = dict(losses)
        terms = ", ".join(f"{k}={v:.6g}" for k, v in self.losses.items())
        super().__init__(
            f"the training loss is not finite at step {step} (epoch {epoch}): {terms}. "
            "Lower optimizer.lr, set trainer.gradient_clip_val, check the data "
            "(visionkit check-data), train in full precision (trainer.precision=32: bf16 / "
            "fp16 can overflow), or set trainer.on_nonfinite_loss=skip to skip such batches"
        )


class ExportError(VisionkitError):
    """An export that failed, or whose exported model disagrees with PyTorch beyond the
    tolerance (the message names the outputs, input shapes and differences)."""


class DiskFullError(VisionkitError):
    """A file that could not be written: no space left on the device, or the disk quota
    exceeded. Nothing was replaced: the previous file, if there was one, is kept.

    ``needed``: bytes the file takes (``at_least``: the size reached when the disk filled);
    ``free``: bytes free on its file system afterwards; ``None`` when not known.
    """

    def __init__(
        self,
        path: object,
        reason: str,
        needed: int | None,
        free: int | None,
        at_least: bool = False,
        kept: bool = False,
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.needed = needed
        self.free = free
        self.at_least = at_least
        self.kept = kept
        sizes = []
        if needed:
            sizes.append(f"needed {'over ' if at_least else '~'}{needed / 1e6:.1f} MB")
        if free is not None:
            sizes.append(f"{free / 1e6:.1f} MB free")
        shown = f" ({', '.join(sizes)})" if sizes else ""
        previous = "the previous file is kept" if kept else "no file was created"
        super().__init__(
            f"{reason} while writing {self.path}{shown}; nothing was replaced ({previous}). "
            "Free some space or write elsewhere, and run again"
        )
