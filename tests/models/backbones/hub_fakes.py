"""Stand-ins for the Hugging Face hub and the torchvision weights server, with no network.

* :func:`fake_hf_hub` replaces the ``hf_hub_download`` that timm's own download function
  (``timm.models._hub.download_from_hf``) calls; it writes the served file into the cache
  folder it is given, in huggingface_hub's layout (``blobs/``, ``snapshots/<commit>/`` links,
  ``refs/main``), so ``try_to_load_from_cache`` and ``scan_cache_dir`` read it like a real
  download. A file the fake repo lacks raises huggingface_hub's ``EntryNotFoundError``.
* :func:`serve_torchvision_file` points a torchvision weights enum member at a ``file://``
  URL in ``tmp_path``; ``torch.hub.download_url_to_file`` (urllib) reads such URLs, so the
  real download code runs, hash check included.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torchvision
from huggingface_hub.errors import EntryNotFoundError
from timm.models import _hub

from visionkit.models.backbones import pretrained

COMMIT = "c0ffee" + "0" * 34


def isolated_caches(monkeypatch: pytest.MonkeyPatch, root: Path) -> tuple[Path, Path]:
    """Empty Hugging Face and torch hub caches under ``root``, the offline switches unset
    (online, the hub taken as reachable), and sockets that fail the test:
    ``(HF_HUB_CACHE, torch hub checkpoints)``."""
    hf, torch_home = root / "hf" / "hub", root / "torch"
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VISIONKIT_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(pretrained, "host_unreachable", lambda url: None)  # the fakes answer
    return hf, torch_home / "hub" / "checkpoints"


def fake_hf_hub(monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> list[tuple[str, str]]:
    """Serve ``files`` (``"repo_id/filename"`` → local file) as the Hugging Face hub; returns
    the list of ``(repo_id, filename)`` requests made, in order."""
    calls: list[tuple[str, str]] = []

    def hf_hub_download(repo_id, filename, *, revision=None, cache_dir=None, **kwargs):
        calls.append((repo_id, filename))
        served = files.get(f"{repo_id}/{filename}")
        if served is None:
            raise EntryNotFoundError(f"404: {repo_id} has no file {filename}")
        root = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        data = served.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / COMMIT / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / (revision or "main")).write_text(COMMIT)
        return str(link)

    monkeypatch.setattr(_hub, "hf_hub_download", hf_hub_download)
    return calls


def forbid_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if timm's Hugging Face download or torch hub's download is called."""

    def called(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(_hub, "hf_hub_download", called)
    monkeypatch.setattr(torch.hub, "download_url_to_file", called)


def serve_torchvision_file(
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    state: dict[str, torch.Tensor] | bytes,
    served: Path,
    hash_prefix: str | None = None,
    member: str = "DEFAULT",
) -> Path:
    """Save ``state`` (or raw bytes) as ``served/<model>-<sha256 prefix>.pth`` and point the
    ``member`` weights of ``model`` (``DEFAULT``) at it through a ``file://`` URL; returns the
    file. ``hash_prefix`` replaces the true hash prefix in the name (a download that must
    fail)."""
    served.mkdir(parents=True, exist_ok=True)
    tmp = served / "tmp.pth"
    if isinstance(state, bytes):
        tmp.write_bytes(state)
    else:
        torch.save(state, tmp)
    prefix = hash_prefix or hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    path = served / f"{model}-{prefix}.pth"
    shutil.move(tmp, path)
    weights = torchvision.models.get_model_weights(model)[member]
    monkeypatch.setattr(weights.value, "url", path.as_uri())
    return path
