"""Label masks that ``visionkit predict`` finds beside their photos and does not predict on.

Roboflow's "Semantic Segmentation Masks" export (and many a hand-made segmentation folder)
keeps each photo's label map beside it: ``train/a.jpg`` and ``train/a_mask.png``. Given such a
folder (or a glob matching both), ``visionkit predict`` would predict on the masks as if they
were photos. A file named ``<stem>_mask`` + a label extension (``.png``, ``.tif``, ``.tiff``)
beside an image ``<stem>.<image extension>`` is left out of folders and globs (counted and
said once); a file given by name, or a glob whose file-name part holds ``mask``
(``*_mask.png``, ``*mask.png``), is read all the same.

>>> from pathlib import Path
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> for name in ("a.jpg", "a_mask.png", "b_mask.png"):
...     _ = (folder / name).write_bytes(b"")
>>> [p.name for p in label_masks([folder / "a.jpg", folder / "a_mask.png", folder / "b_mask.png"])]
['a_mask.png']
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from visionkit.data.batch import IMAGE_EXTENSIONS
from visionkit.data.readers.mask_hints import MASK_EXTENSIONS

#: The suffix of a label mask's name after its photo's stem (Roboflow's ``a_mask.png``).
MASK_SUFFIX = "_mask"


def label_masks(paths: Iterable[Path]) -> list[Path]:
    """The files of ``paths`` that are the label mask of an image beside them: named
    ``<stem>_mask`` + ``.png`` / ``.tif`` / ``.tiff`` with an image ``<stem>.<extension>``
    (:data:`~visionkit.data.batch.IMAGE_EXTENSIONS`) in the same folder, names compared in
    any case."""
    listings: dict[Path, set[str]] = {}
    masks = []
    for path in paths:
        stem, ext = os.path.splitext(path.name)
        base = stem[: -len(MASK_SUFFIX)]
        if not (base and stem.casefold().endswith(MASK_SUFFIX) and ext.lower() in MASK_EXTENSIONS):
            continue
        if path.parent not in listings:
            try:
                listings[path.parent] = {name.casefold() for name in os.listdir(path.parent)}
            except OSError:
                listings[path.parent] = set()
        if any(f"{base}{e}".casefold() in listings[path.parent] for e in IMAGE_EXTENSIONS):
            masks.append(path)
    return masks


def spells_mask(pattern: str) -> bool:
    """Whether a glob ``pattern``'s file names ask for label masks: ``mask`` in their part,
    ``photos/*_mask.png`` or ``photos/*mask.png`` (not ``seg_masks/*``, a folder's name)."""
    return MASK_SUFFIX[1:] in os.path.basename(pattern).casefold()


def masks_said(masks: Sequence[Path]) -> str:
    """How the label masks left out are said: their count, one named, and how to read them."""
    many = len(masks) > 1
    return (
        f"{len(masks)} label mask{'s' * many} beside {'their' if many else 'its'} image "
        f"(<name>{MASK_SUFFIX}.png beside <name>.jpg, as Roboflow's segmentation exports), "
        f"e.g. {masks[0]}: not predicted on (give a file by name, or a glob spelling out "
        f"{MASK_SUFFIX}, to predict on it)"
    )
