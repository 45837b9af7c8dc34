"""Checkpoint files: written atomically, read safely.

Writes go to a temporary file in the same folder, are flushed and ``fsync``-ed, then renamed
over the target, so a process killed mid-save leaves the previous checkpoint intact. Reads
always use ``torch.load(..., weights_only=True, map_location=...)``: a checkpoint that holds a
pickled object is refused, never unpickled.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from visionkit.errors import CheckpointError


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temp file + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; every failure is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False; that advice is never passed on.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise CheckpointError(
                path, "truncated or corrupt (not a file torch.save wrote)"
            ) from None
        raise CheckpointError(
            path,
            "refused: it holds objects other than tensors and plain types "
            f"(a pickled {found.group(1)}), and is never unpickled",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(path, f"truncated or corrupt ({err})".split("\n")[0]) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(path, f"expected a dict, found {type(ckpt).__name__}")
    return ckpt
