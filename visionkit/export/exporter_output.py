"""What the TorchScript-based ONNX exporter prints, kept off the terminal.

On a failure, that exporter (torch 2.x) writes its whole IR graph to the process's standard
output from C++ (``Torch IR graph at exception: graph(%input.1 : Float(...``, tens of kB: the
``_jit_onnx_log`` it switches on whatever ``verbose`` says), which ``contextlib.redirect_stdout``
does not catch, and raises a message that quotes the graph. :func:`captured_output` catches
both file descriptors; :func:`failure_message` is the short error, naming the exporter and the
opset with what to try, and where the full output was kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from visionkit.checkpoint import write_atomic
from visionkit.choices import DEFAULT_OPSET

try:  # POSIX: a copy of a descriptor numbered past 0-2
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: Where a message of torch's exporter stops being about the cause.
_NOISE = re.compile(r"\s*(\[Caused by|Please feel free|\(Occurred when)")


class Captured:
    """The text written to stdout and stderr inside :func:`captured_output` (``text``)."""

    text = ""


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Send what is written to file descriptors 1 and 2 (C++ and Python alike) to a temporary
    file; ``.text`` holds it afterwards. A descriptor that is not open (``pythonw``, a daemon
    without stdio) is left alone, and where the capture cannot be set up (no temporary file,
    no descriptor left) nothing is captured: an export never fails for it."""
    captured = Captured()
    _flush()
    with contextlib.ExitStack() as stack:
        try:
            sink = stack.enter_context(tempfile.TemporaryFile(mode="w+b"))
        except OSError:
            sink = None
        saved = _redirect(sink.fileno()) if sink is not None else {}
        try:
            with contextlib.redirect_stdout(sys.stderr):  # Python's prints: the same file
                yield captured
        finally:
            _flush()
            _restore(saved)
            if sink is not None:
                with contextlib.suppress(OSError):
                    sink.seek(0)
                    captured.text = sink.read().decode("utf-8", "replace")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):  # None under pythonw
        with contextlib.suppress(Exception):
            stream.flush()


def _copy(fd: int) -> int | None:
    """A copy of the open descriptor ``fd``, numbered 3 or above (so that it never takes the
    place of a closed 1 or 2); ``None`` when ``fd`` is not open."""
    try:
        if fcntl is not None:
            return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        return os.dup(fd)
    except OSError:
        return None


def _redirect(sink: int) -> dict[int, int]:
    """Point descriptors 1 and 2, those open, at ``sink``: descriptor → its saved copy; ``{}``
    (everything as it was, no copy left open) when that fails."""
    saved: dict[int, int] = {}
    try:
        for fd in (1, 2):
            copy = _copy(fd)
            if copy is not None:
                saved[fd] = copy
                os.dup2(sink, fd)
    except OSError:
        _restore(saved)
        return {}
    return saved


def _restore(saved: dict[int, int]) -> None:
    """Put back the descriptors :func:`_redirect` pointed elsewhere, and close the copies."""
    for fd, copy in saved.items():
        with contextlib.suppress(OSError):
            os.dup2(copy, fd)
        with contextlib.suppress(OSError):
            os.close(copy)


def short_reason(err: BaseException, limit: int = 300) -> str:
    """The cause of an exporter's exception in one line: its first line, less torch's
    ``[Caused by the value ...]`` graph excerpt and its request for a pull request."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    first = _NOISE.split(first, maxsplit=1)[0].strip().rstrip(".")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def failure_message(err: BaseException, opset: int, log: Path | None) -> str:
    """The error of a failed TorchScript-based export at ``opset``: what failed, what to try,
    and the file holding the exporter's full output (``log``, when it could be written)."""
    tries = [f"--opset {DEFAULT_OPSET} (the default)"] if opset < DEFAULT_OPSET else []
    tries.append(f"--exporter dynamo (opset {DEFAULT_OPSET} and later)")
    kept = f"; the exporter's full message and graph are in {log}" if log else ""
    return (
        f"ONNX export with the TorchScript-based exporter at opset {opset} failed: "
        f"{short_reason(err)}. Try {' or '.join(tries)}{kept}"
    )


def log_beside(output: Path) -> Path:
    """Where a failed export of ``output`` keeps the exporter's output:
    ``<output>.export-error.txt``."""
    return output.with_name(output.name + ".export-error.txt")


def keep_log(log: Path, err: BaseException, printed: str) -> Path | None:
    """Write the exception and what the exporter printed to ``log``; ``None`` when that
    folder cannot be written."""
    text = f"{type(err).__name__}: {err}\n\n{printed}"
    try:
        write_atomic(log, lambda p: p.write_text(text, encoding="utf-8"))
    except OSError:
        return None
    return log
