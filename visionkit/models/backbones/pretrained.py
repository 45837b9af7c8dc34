"""Backbone weights: a local file given as ``pretrained``, and the offline pretrained caches.

Files are loaded by the one weight loader, :mod:`visionkit.models.weights`. Nothing here
touches the network. ``pretrained=True`` only ever reads a file that timm's
Hugging Face cache or torch hub's cache already holds; when the file is absent,
:class:`WeightsNotCachedError` says where it looked and how to pass a local file instead.

Pickle-based files are read with ``torch.load(..., weights_only=True)`` only, so a checkpoint
cannot run code when it is loaded (torchvision's own loads too: :func:`forced_weights_only`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from visionkit.errors import CheckpointError
from visionkit.models.weights import LoadReport, load_weights

logger = logging.getLogger("visionkit.models.backbones")


class WeightsNotCachedError(CheckpointError):
    """``pretrained=True`` asked for weights that are not in the local cache (never downloaded)."""

    def __init__(self, name: str, looked_in: object) -> None:
        self.name = name
        super().__init__(
            looked_in,
            f"pretrained weights for backbone {name!r} are not in the local cache, and visionkit "
            "never downloads them (no network access is assumed). Download them on a machine "
            "with network access, or pass a local file instead: "
            "create_backbone(name, pretrained='/path/to/weights.safetensors') "
            "(or `pretrained: /path/to/weights.safetensors` in a config); .safetensors, .pth, "
            ".pt and .bin are accepted",
        )


def load_pretrained_file(
    backbone: nn.Module, path: str | os.PathLike[str], prefixes: tuple[str, ...] = ("",)
) -> LoadReport:
    """``create_backbone(name, pretrained=path)``: the matching tensors of a local weights file
    through the one weight loader (:func:`visionkit.models.weights.load_weights`).

    The report is attached as ``backbone.load_report`` and its summary logged on the
    ``visionkit.models.backbones`` logger: INFO when every tensor of the backbone was loaded,
    WARNING otherwise. The file's names the backbone lacks (a classifier's ``fc.*``) are
    expected and only reported.
    """
    report = load_weights(backbone, path, prefixes, context="pretrained")
    logger.log(logging.INFO if report.ok else logging.WARNING, "%s", report.summary())
    backbone.load_report = report
    return report


def hf_cached_file(repo_id: str, filenames: list[str]) -> Path | None:
    """The first of ``filenames`` of a Hugging Face repo present in the local HF cache.

    The cache folder is read from ``HF_HUB_CACHE`` / ``HF_HOME`` at call time, so tests can
    point it elsewhere. ``repo_id`` may carry a revision as ``repo@revision``.
    """
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = repo_id.partition("@")
    for filename in filenames:
        found = try_to_load_from_cache(
            repo, filename, cache_dir=hf_cache_dir(), revision=revision or None
        )
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as the environment says now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def torch_hub_file(url: str) -> Path:
    """Where torch hub keeps (would keep) the download of ``url``: ``<hub dir>/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


@contextlib.contextmanager
def forced_weights_only() -> Iterator[None]:
    """Make every ``torch.load`` in the block use ``weights_only=True``.

    torchvision's builders load cached weights through ``torch.hub.load_state_dict_from_url``
    without ``weights_only``; ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` (read by ``torch.load`` at call
    time) makes those loads safe too. The previous value is restored afterwards.
    """
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old
