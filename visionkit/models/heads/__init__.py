"""Heads. Each module registers its head class in ``HEADS``; the import list is explicit.

``_utils`` holds what the heads share (and the detection heads' box selection), ``_semantic``
what the two semantic segmentation heads share.
"""

from visionkit.models.heads import (
    classification,
    deeplabv3plus,
    embedding,
    fcos,
    fcos_embedding,
    fcos_mask,
    keypoints,
    retinanet,
    semantic_fpn,
)
from visionkit.models.heads.base import Head
from visionkit.models.heads.classification import ClassificationHead
from visionkit.models.heads.deeplabv3plus import DeepLabV3PlusHead
from visionkit.models.heads.embedding import EmbeddingHead
from visionkit.models.heads.fcos import FCOSHead
from visionkit.models.heads.fcos_embedding import FCOSEmbeddingHead
from visionkit.models.heads.fcos_mask import FCOSMaskHead
from visionkit.models.heads.keypoints import FCOSKeypointsHead
from visionkit.models.heads.retinanet import RetinaNetHead
from visionkit.models.heads.semantic_fpn import SemanticFPNHead
from visionkit.registry import HEADS


def list_heads(pattern: str | None = None) -> list[str]:
    """Names of the registered heads, optionally filtered with ``fnmatch``."""
    return HEADS.names(pattern)


__all__ = [
    "ClassificationHead",
    "DeepLabV3PlusHead",
    "EmbeddingHead",
    "FCOSEmbeddingHead",
    "FCOSHead",
    "FCOSKeypointsHead",
    "FCOSMaskHead",
    "Head",
    "RetinaNetHead",
    "SemanticFPNHead",
    "classification",
    "deeplabv3plus",
    "embedding",
    "fcos",
    "fcos_embedding",
    "fcos_mask",
    "keypoints",
    "list_heads",
    "retinanet",
    "semantic_fpn",
]
