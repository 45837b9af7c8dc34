"""Heads. Each module registers its builders in ``HEADS``; the import list is explicit."""

from visionkit.models.heads import classification, fcos, fcos_mask, retinanet, semantic
from visionkit.models.heads.base import Head
from visionkit.models.heads.classification import ClassificationHead
from visionkit.models.heads.fcos import FCOSHead
from visionkit.models.heads.fcos_mask import FCOSMaskHead
from visionkit.models.heads.retinanet import RetinaNetHead
from visionkit.models.heads.semantic import DeepLabV3PlusHead, SemanticFPNHead
from visionkit.registry import HEADS


def list_heads(pattern: str | None = None) -> list[str]:
    """Names of the registered heads, optionally filtered with ``fnmatch``."""
    return HEADS.names(pattern)


__all__ = [
    "ClassificationHead",
    "DeepLabV3PlusHead",
    "FCOSHead",
    "FCOSMaskHead",
    "Head",
    "RetinaNetHead",
    "SemanticFPNHead",
    "classification",
    "fcos",
    "fcos_mask",
    "list_heads",
    "retinanet",
    "semantic",
]
