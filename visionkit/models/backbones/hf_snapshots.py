"""A Hugging Face hub cache copied by hand: its ``refs/main`` left behind.

huggingface_hub finds a cached file of the main revision through
``models--<org>--<name>/refs/main``, which holds the commit hash naming the
``snapshots/<hash>/`` folder. A cache copied from another machine without its ``refs/``
folder holds the file and is not found. With exactly one snapshot there is no doubt which it
is: :func:`only_snapshot_file` finds it (and says so); otherwise :func:`cache_gap` says
what is missing and what to write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("visionkit.models.backbones")


def repo_folder(cache: Path, repo: str) -> Path:
    """huggingface_hub's folder of a model repo in ``cache``."""
    return cache / f"models--{repo.replace('/', '--')}"


def _snapshots(folder: Path) -> list[Path]:
    snapshots = folder / "snapshots"
    return sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []


def only_snapshot_file(cache: Path, repo: str, filenames: Sequence[str]) -> Path | None:
    """The first of ``filenames`` in the only snapshot of ``repo``'s cache folder when it has
    no ``refs/main`` (huggingface_hub's rule then finds nothing), else ``None``."""
    folder = repo_folder(cache, repo)
    snapshots = _snapshots(folder)
    if (folder / "refs" / "main").is_file() or len(snapshots) != 1:
        return None
    for name in filenames:
        path = snapshots[0] / name
        if path.is_file():
            logger.info(
                "%s: no refs/main (a cache copied without its refs/ folder?): read %s, its only "
                "snapshot",
                folder,
                path,
            )
            return path
    return None


def cache_gap(cache: Path, repo: str, filenames: Sequence[str]) -> str | None:
    """Why a cache folder of ``repo`` that exists gives none of ``filenames`` for the main
    revision, and what to write; ``None`` when there is no such folder."""
    folder = repo_folder(cache, repo)
    if not folder.is_dir():
        return None
    files = " or ".join(filenames)
    snapshots = _snapshots(folder)
    ref = folder / "refs" / "main"
    if ref.is_file():
        commit = ref.read_text(errors="replace").strip()
        return f"{ref} names commit {commit}, and {folder}/snapshots/{commit}/ holds no {files}"
    if not snapshots:
        return f"{folder} holds no snapshots/<commit>/ folder: copy the whole folder"
    if len(snapshots) > 1:
        names = ", ".join(p.name for p in snapshots)
        return (
            f"{folder} has no refs/main and {len(snapshots)} snapshots ({names}): write the "
            f"commit hash of the one to read into {ref} (huggingface_hub reads the main "
            "revision from it)"
        )
    return f"{folder} has no refs/main, and its only snapshot {snapshots[0]} holds no {files}"
