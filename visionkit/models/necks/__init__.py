"""Necks: map the backbone's feature list to another list (e.g. FPN P3–P7).

Each module registers its neck class in ``NECKS`` when imported; the import list is explicit.
Build a neck by name with ``NECKS.build("fpn", in_channels=..., strides=...)`` or call the
class, ``visionkit.models.necks.FPN(...)``.
"""

from visionkit.models.necks import fpn
from visionkit.models.necks.fpn import FPN
from visionkit.registry import NECKS


def list_necks(pattern: str | None = None) -> list[str]:
    """Names of the registered necks, optionally filtered with ``fnmatch``."""
    return NECKS.names(pattern)


__all__ = ["FPN", "fpn", "list_necks"]
