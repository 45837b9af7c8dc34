"""Heads. Each module registers its builders in ``HEADS``; the import list is explicit."""

from visionkit.heads import classification, fcos, retinanet
from visionkit.heads.base import Head
from visionkit.heads.classification import ClassificationHead
from visionkit.heads.fcos import FCOSHead
from visionkit.heads.retinanet import RetinaNetHead
from visionkit.registry import HEADS


def list_heads(pattern: str | None = None) -> list[str]:
    """Names of the registered heads, optionally filtered with ``fnmatch``."""
    return HEADS.names(pattern)


__all__ = [
    "ClassificationHead",
    "FCOSHead",
    "Head",
    "RetinaNetHead",
    "classification",
    "fcos",
    "list_heads",
    "retinanet",
]
