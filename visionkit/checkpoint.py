"""Files on disk: written atomically, checkpoints read safely.

:func:`write_atomic` is visionkit's one atomic file writer (checkpoints, exports, COCO json,
metrics.csv, predictions): a temporary file in the same folder, ``fsync``-ed, then renamed over
the target and the folder ``fsync``-ed, so a process killed mid-save leaves the previous file
intact. A full disk or quota (``ENOSPC``, ``EDQUOT``) becomes a :class:`DiskFullError` that
names the file and the space needed, with the previous file kept and no temporary file left.
Reads always use ``torch.load(..., weights_only=True, map_location=...)``: a checkpoint that
holds a pickled object is refused, never unpickled. :func:`unused_folder` is the one rule for
folders a command fills (run folders, ``eval``, ``predict`` outputs, ``show-data`` pictures):
never one in use.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from visionkit.errors import CheckpointError, DiskFullError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_atomic(
    path: str | os.PathLike, write: Callable[[Path], None], size_hint: int | None = None
) -> Path:
    """Write ``path`` all at once or not at all (visionkit's one atomic file writer).

    ``write(tmp)`` writes a temporary file in the same folder; it is then ``fsync``-ed, given
    the usual file mode, renamed over ``path`` and the folder is ``fsync``-ed, so the rename
    survives a power cut too. When ``write`` raises (or the process is stopped), the previous
    ``path`` is left as it was and the temporary file is removed.

    Args:
        path: the file to (re)write; its folder is created when missing.
        write: writes the whole content to the path it is given (e.g.
            ``lambda p: p.write_text(text)``, ``lambda p: onnx.save(proto, str(p))``).
        size_hint: the expected size in bytes, for the message of a full disk (else the size
            reached when the disk filled is given as a lower bound).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DiskFullError: no space left on the device, or the disk quota exceeded (``ENOSPC`` /
            ``EDQUOT``, also when a library reports it wrapped in its own exception), at any
            step; the previous ``path`` is kept and no temporary file is left.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
    >>> write_atomic(target, lambda tmp: tmp.write_text("hello")).read_text()
    'hello'
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        _fsync(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException as err:
        written = 0
        if tmp is not None and os.path.exists(tmp):
            written = os.path.getsize(tmp)
            os.unlink(tmp)
        code = _disk_full(err)
        if code is None:
            raise
        reason = os.strerror(code).lower()
        needed, at_least = (size_hint, False) if size_hint else (written, True)
        raise DiskFullError(path, reason, needed, _free(path), at_least, path.exists()) from err
    _fsync(path.parent)
    return path


def run_folder_of(checkpoint: str | os.PathLike) -> Path:
    """The run folder a checkpoint belongs to: its folder, or the folder above when that is
    ``checkpoints/`` (``runs/x/checkpoints/best.ckpt`` → ``runs/x``).

    >>> run_folder_of("runs/x/checkpoints/best.ckpt").as_posix()
    'runs/x'
    >>> run_folder_of("models/best.ckpt").as_posix()
    'models'
    """
    folder = Path(checkpoint).parent
    return folder.parent if folder.name == "checkpoints" else folder


def holds_files(path: Path) -> bool:
    """Whether ``path`` is a file or a folder with anything in it (an empty folder is free to
    write into)."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def numbered_folders(folder: str | os.PathLike) -> list[Path]:
    """``folder`` and its ``folder-2``, ``folder-3``, ... siblings that exist (what
    :func:`unused_folder` chose for earlier commands), sorted by number."""
    folder = _named(folder)
    pattern = re.compile(rf"{re.escape(folder.name)}(?:-([2-9]|[1-9]\d+))?")
    found = []
    if folder.parent.is_dir():
        for path in folder.parent.iterdir():
            match = pattern.fullmatch(path.name)
            if match and path.is_dir():
                found.append((int(match.group(1) or 1), path))
    return [path for _, path in sorted(found)]


def _named(folder: str | os.PathLike) -> Path:
    """``folder``, made absolute when it has no name of its own (``.``, ``..``) so that
    ``folder-2`` is its sibling."""
    folder = Path(folder)
    return Path(os.path.abspath(folder)) if folder.name in ("", "..") else folder


def unused_folder(folder: str | os.PathLike, in_use: Callable[[Path], bool]) -> Path:
    """``folder``, or when ``in_use(folder)`` the first of ``folder-2``, ``folder-3``, ...
    that is not: what a command writes never replaces what an earlier one left (Ultralytics'
    run-folder rule). The caller says what "in use" means (a run's files, any file).

    >>> unused_folder("runs/exp", lambda p: p.name in {"exp", "exp-2"}).name
    'exp-3'
    """
    folder = _named(folder)
    chosen, n = folder, 2
    while in_use(chosen):
        chosen = folder.with_name(f"{folder.name}-{n}")
        n += 1
    return chosen


def _disk_full(err: BaseException) -> int | None:
    """``ENOSPC`` / ``EDQUOT`` when ``err`` or an exception it was raised from is that
    ``OSError``, or a library's own error whose text is its ``strerror`` (safetensors:
    "No space left on device (os error 28)"; ``torch.save`` raises a ``RuntimeError`` from
    the ``OSError``); else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return current.errno
        for code in _DISK_FULL:
            if os.strerror(code) in str(current):
                return code
        current = current.__cause__ or current.__context__
    return None


def _free(path: Path) -> int | None:
    """Free bytes on the file system of ``path`` (its nearest existing folder)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def is_temporary_file_of(name: str, target: str) -> bool:
    """Whether the file name ``name`` is a temporary file :func:`write_atomic` makes (and an
    interrupted process may leave behind) for a file named ``target``."""
    return name.startswith(f".{target}.") and name.endswith(".tmp")


def _fsync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through :func:`write_atomic` (into an open file: saving to a
    path name, torch aborts the process on a full disk instead of raising)."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    write_atomic(path, save, size_hint=tensor_bytes(obj))


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` and the dicts, lists and tuples inside it: about the
    size ``torch.save`` writes."""
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes() if obj.device.type != "meta" else 0
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def _is_torchscript(path: Path) -> bool:
    """A zip archive of ``torch.jit.save`` (its ``constants.pkl``), not of ``torch.save``."""
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


#: Suffixes of config files, which a checkpoint is not (``--checkpoint runs/x/config.yaml``).
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; every failure is a :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("**/*.ckpt"))[:3]
        raise CheckpointError(
            path,
            "is a folder; give a checkpoint file"
            + (f", e.g. {', '.join(map(str, found))}" if found else " (it holds no .ckpt file)"),
        )
    if not path.is_file():
        raise CheckpointError(path, "file does not exist")
    if path.suffix.lower() in CONFIG_SUFFIXES:  # a run's config.yaml, given for its checkpoint
        found = sorted(path.parent.glob("checkpoints/*.ckpt"))[:3]
        raise CheckpointError(
            path,
            "a config file, not a checkpoint: give the .ckpt that visionkit train wrote"
            + (
                f", e.g. {', '.join(map(str, found))}"
                if found
                else " (<run>/checkpoints/best.ckpt)"
            ),
        )
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            path,
            "an ONNX export, not a checkpoint: run it with visionkit.inference.onnx_runtime."
            "OnnxPredictor, or an end-to-end export (--nms) with python -m "
            "visionkit.export.standalone; --checkpoint takes the .ckpt it was exported from",
        )
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        raise CheckpointError(
            path,
            "a TorchScript export, not a checkpoint: read it with "
            "visionkit.export.read_torchscript(path) (or torch.jit.load)",
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False; that advice is never passed on.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise CheckpointError(
                path, "truncated or corrupt (not a file torch.save wrote)"
            ) from None
        what = found.group(1)
        advice = (
            "a model saved whole (torch.save(model, ...)) is read where you trust the file and "
            "its weights saved alone: torch.save(model.state_dict(), 'weights.pth'), then give "
            "weights.pth"
            if _names_a_module(what)
            else "a training checkpoint with pickled extras (its arguments, say) is read where "
            "you trust the file (torch.load out of its weights-only mode) and its weights "
            "saved alone: torch.save(checkpoint['state_dict'], 'weights.pth'), then give "
            "weights.pth"
        )
        raise CheckpointError(
            path,
            "refused: it holds objects other than tensors and plain types "
            f"(a pickled {what}), and is never unpickled; {advice}",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        if "on a CUDA device but torch.cuda.is_available() is False" in str(err):
            raise CheckpointError(
                path,
                f"map_location={map_location!r}, but this machine has no CUDA GPU; "
                "map_location='cpu' reads it here",
            ) from None
        raise CheckpointError(path, f"truncated or corrupt ({err})".split("\n")[0]) from None
    except (KeyError, IndexError, TypeError, AttributeError) as err:  # the unpickler on bytes
        # that torch.save never wrote (a text file: KeyError of a memo it never made)
        raise CheckpointError(
            path,
            f"truncated or corrupt (not a file torch.save wrote: {type(err).__name__}: "
            f"{str(err)[:200]})",
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(path, f"expected a dict, found {type(ckpt).__name__}")
    return ckpt


#: Modules whose classes are models: a pickled global under one of them is a model saved whole.
MODEL_MODULES = ("torch.nn.", "timm.models.", "torchvision.models.")


def _names_a_module(global_name: str) -> bool:
    """Whether the pickled global ``global_name`` (``torchvision.models.resnet.ResNet``) is an
    ``nn.Module`` class: under :data:`MODEL_MODULES`, or a class of a module already imported
    (a user's ``__main__.Net``) that is one; nothing is imported for the question."""
    if global_name.startswith(MODEL_MODULES):
        return True
    module_name, _, qualname = global_name.rpartition(".")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split(".") if found is not None else ():
        found = getattr(found, part, None)
    return isinstance(found, type) and issubclass(found, torch.nn.Module)


#: What a checkpoint holds only to resume training: the optimiser's and schedulers' state and,
#: with ``ema``, the raw weights beside the averaged ones (``state_dict``).
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "current_model_state", "averaging_state")


def resumable(checkpoint: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds the optimiser's state a run resumes from (a run's
    ``best.ckpt`` does not once it ends: :func:`strip_training_state`)."""
    return "optimizer_states" in checkpoint


def strip_training_state(path: str | os.PathLike) -> tuple[int, int]:
    """Rewrite a checkpoint without :data:`TRAINING_STATE` (as Ultralytics strips ``best.pt``
    when a run ends): the model, its config and classes stay, for ``eval``, ``predict``,
    ``export`` and ``init_from``; resuming needs ``last.ckpt``. Returns the file's size before
    and after, in bytes."""
    before = os.path.getsize(path)
    checkpoint = load_checkpoint(path)
    if not any(key in checkpoint for key in TRAINING_STATE):
        return before, before
    for key in TRAINING_STATE:
        checkpoint.pop(key, None)
    save_atomic(checkpoint, path)
    return before, os.path.getsize(path)
