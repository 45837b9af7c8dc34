"""The ``Sample`` contract, the batch :func:`collate` makes of Samples, and what every dataset
reader shares (safe path handling).

A dataset returns a *Sample* (before transforms), a dict with:

- ``image``: ``H×W×3 uint8`` RGB array (from :func:`visionkit.data.io.read_image`);
- ``image_id``: the dataset's integer id (never derived from a file name);
- ``orig_size``: ``(H, W)`` of the image as decoded (EXIF orientation applied);
- ``path``: the image file, as a string (for messages and prediction files);
- any of the targets the reader declares (its class attribute ``targets``) and was asked for:

  - ``class`` (int): the image-level class, contiguous ``0..C-1``;
  - ``identity`` (int): the image's identity (the ``identities`` reader: a person, a shape
    style), contiguous ``0..I-1``; its own key, so that a mix of sets never reads an identity
    as a class;
  - ``boxes`` (float32 ``[N, 4]``, absolute-pixel xyxy) and ``labels`` (int64 ``[N]``,
    contiguous ``0..C-1``): the instances;
  - ``masks`` (uint8 ``[N, H, W]``, one binary mask per box, in the order of ``boxes``);
  - ``semantic`` (uint8 ``[H, W]``): the label map, :data:`IGNORE_PIXEL` where a pixel
    carries no label;
  - ``keypoints`` (float32 ``[N, K, 3]``, one row per box: x, y in pixel indices and the
    COCO visibility 0 / 1 / 2; resized with :func:`scale_about_pixel_centres`, a point on
    the image's far edge read onto its last pixel, :func:`onto_last_pixel`) with
    ``keypoint_flip`` (``[K]``, the keypoint each one becomes under a horizontal flip;
    :mod:`visionkit.data.keypoint_transforms`);
  - ``identities`` (int64 ``[N]``, one per box: its index in the ``identity`` family, ``-1``
    without one; :mod:`visionkit.data.readers.coco_identities`);
  - ``annotated_classes`` (bool ``[C]``): in a training mix whose sets annotate different
    box classes, the classes this image's set annotates (:mod:`visionkit.data.
    annotated_classes`); absent: every class;
- under ``on_bad_image: skip``, ``skipped``: the ``{"index", "path", "reason"}`` records of
  unreadable images this sample replaced (see :func:`visionkit.data.checks.read_or_skip`).

A key that is absent means "this image has no label for that task"; an empty ``[0, 4]`` means
"labelled, and there is nothing". Every reader also exposes ``label_names``: a dict from label
family (``"class"``, ``"instances"``, ``"semantic"``, ``"identity"``) to the ordered class names of that
family (:attr:`visionkit.evaluation.tasks.TaskSpec.labels` says which family a head uses).

:func:`collate` turns transformed Samples into the batch every head's ``loss`` receives (its
docstring lists the keys).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.data.annotated_classes import ANNOTATED, collate_annotated
from visionkit.data.io import HEIF_ADVICE, HEIF_EXTENSIONS
from visionkit.errors import DataError

logger = logging.getLogger(__name__)

IGNORE_CLASS = -1  # ``class`` of an image without an image-level label (in a collated batch)
IGNORE_PIXEL = 255  # ``semantic`` label of pixels that carry none (padding, crowds, unlabelled)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


Sample = dict[str, Any]


def check_image(image: Any) -> None:
    """Raise ``ValueError`` unless ``image`` is a Sample's image: ``uint8 [H, W, 3]`` RGB."""
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
    ):
        got = f"{image.dtype} {list(image.shape)}" if hasattr(image, "shape") else type(image)
        raise ValueError(
            f"the sample's image is {got}; expected a uint8 [H, W, 3] RGB array (0..255, as "
            "visionkit.data.io.read_image returns it; floats in 0..1: (x * 255).round()"
            ".astype(np.uint8))"
        )


def scale_about_pixel_centres(xy: Any, scale: Any) -> Any:
    """Pixel-index coordinates ``xy`` (``[..., 2]``: x, y, pixel ``i``'s centre at ``i``, as
    a Sample's keypoints) in an image resized ``scale`` times (new / old size: a number, or
    ``(sx, sy)`` as an array or tensor): ``(x + 0.5) * s - 0.5``, so that a point stays on
    the pixel it labels (``x * s`` moves it ``(s - 1) / 2`` pixels off). The one formula of
    the pipeline's resizes, a mix's rescaled partner and the predictions mapped back;
    arrays and tensors alike.

    >>> scale_about_pixel_centres(np.array([[0.0, 3.0]]), 2.0).tolist()
    [[0.5, 6.5]]
    """
    return (xy + 0.5) * scale - 0.5


def onto_last_pixel(points: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Keypoints ``points`` (``[..., 3]``: x, y pixel indices, visibility) of an ``(H, W)``
    image, each labelled one past the last pixel but not past the image's far edge
    (``W - 0.5 < x <= W``, or ``y`` so: the edge as annotators counting pixel edges write it)
    on the last pixel (``W - 1``), as Ultralytics' pose labels and Detectron2 keep such a
    point; training drops a point past the last pixel (more than half a pixel beyond its
    centre). Any other point is left as it is (``W - 0.75`` lies on the last pixel already;
    one beyond ``W`` is outside). A copy.

    >>> points = np.array([[32.0, 31.75, 2], [31.25, 31.5, 2], [33.0, 5, 2], [32, 0, 0]])
    >>> onto_last_pixel(points, (32, 32)).tolist()
    [[31.0, 31.0, 2.0], [31.25, 31.5, 2.0], [33.0, 5.0, 2.0], [32.0, 0.0, 0.0]]
    """
    out = np.array(points, dtype=np.float32, copy=True)
    labelled = out[..., 2] > 0
    for axis, extent in ((0, size[1]), (1, size[0])):
        values = out[..., axis]
        values[labelled & (values > extent - 0.5) & (values <= extent)] = extent - 1
    return out


#: Folders that never hold the user's data, whatever is in them: macOS's zip leftovers
#: (``__MACOSX``, its ``._*`` resource files), Synology's thumbnails (``@eaDir``, a
#: ``SYNOPHOTO_THUMB_*.jpg`` per photo) and recycle bin (``#recycle``), Windows' recycle bin
#: and volume data. No listing reads them, nor hidden files and folders (:func:`skipped_name`).
#: ``export/standalone.py`` keeps a copy (it imports nothing from visionkit).
SYSTEM_FOLDERS = frozenset(
    {"__MACOSX", "@eaDir", "#recycle", "$RECYCLE.BIN", "System Volume Information"}
)
_SYSTEM_FOLDERS_CASEFOLDED = frozenset(name.casefold() for name in SYSTEM_FOLDERS)


def skipped_name(name: str) -> bool:
    """Whether a file or folder of this name is left out of every listing: hidden
    (``.DS_Store``, ``._photo.jpg``, ``.ipynb_checkpoints``) or one of :data:`SYSTEM_FOLDERS`,
    in any case (Windows writes ``$Recycle.Bin``); a look-alike (``eaDir``, ``recycle``) is not.

    >>> [skipped_name(n) for n in (".DS_Store", "@eaDir", "$Recycle.Bin", "recycle", "cat")]
    [True, True, True, False, False]
    """
    return name.startswith(".") or system_folder(name)


def system_folder(name: str) -> bool:
    """Whether ``name`` is one of :data:`SYSTEM_FOLDERS`, in any case."""
    return name.casefold() in _SYSTEM_FOLDERS_CASEFOLDED


def list_files(
    folder: Path,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    recursive: bool = True,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """The files below ``folder`` (sorted) with one of ``extensions`` (case-insensitive; images
    by default). Hidden files and folders (a name starting with ``.``: ``.DS_Store``, macOS
    ``._photo.jpg`` companions, ``.ipynb_checkpoints/``) and :data:`SYSTEM_FOLDERS`
    (Synology's ``@eaDir/`` thumbnails, ``__MACOSX/``) are never listed, nor anything inside
    the folders ``exclude`` (compared after resolving symbolic links: ``visionkit predict``
    never reads back its own output folder). Symbolic links to folders are followed, as
    torchvision's ``ImageFolder`` follows them, each real folder listed once. The one folder
    listing every reader, converter and ``visionkit predict`` uses."""
    exts = tuple(e.lower() for e in extensions)
    skipped = [Path(os.path.realpath(x)) for x in exclude]
    candidates = walk_files(folder) if recursive else folder.iterdir()
    heif = ".jpg" in exts and not set(exts) & set(HEIF_EXTENSIONS)  # images: HEIC named
    found, photos = [], []
    for p in candidates:
        suffix = p.suffix.lower()
        if (
            (suffix in exts or (heif and suffix in HEIF_EXTENSIONS))
            and not any(map(skipped_name, p.relative_to(folder).parts))
            and p.is_file()
            and not (skipped and is_inside(p, skipped))
        ):
            (found if suffix in exts else photos).append(p)
    if photos:
        photos.sort()
        logger.warning(
            "%s: left out %d HEIC / HEIF photo%s (%s%s): %s",
            folder,
            len(photos),
            "s" * (len(photos) > 1),
            photos[0].relative_to(folder).as_posix(),
            ", ..." if len(photos) > 1 else "",
            HEIF_ADVICE,
        )
    return sorted(found)


def walk_files(folder: Path, not_entered: list[Path] | None = None) -> Iterator[Path]:
    """The files below ``folder``, following symbolic links to folders (``Path.rglob`` of
    Python 3.11 does not: a linked sub-folder's photos were left out without a word); a real
    folder reached twice (two links, or a link to a folder above it) is listed once. Hidden
    and system sub-folders (:func:`skipped_name`) are not entered (added to ``not_entered``
    when given)."""
    seen = set()
    for parent, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        if not_entered is not None:
            not_entered += [Path(parent, name) for name in folders if skipped_name(name)]
        folders[:] = [name for name in folders if not skipped_name(name)]
        yield from (Path(parent, name) for name in names)


def is_inside(path: str | os.PathLike, folders: Sequence[Path]) -> bool:
    """Whether ``path`` (symbolic links resolved) is one of ``folders`` or below one (give
    ``folders`` resolved, ``os.path.realpath``)."""
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(folder) for folder in folders)


def resolve_under_root(root: Path, relative: str) -> Path:
    """Join ``relative`` to ``root``, refusing paths that escape it: ``..`` components that
    climb above it and absolute paths elsewhere (``ValueError``).

    The check is on the path as written (normalised, not resolved), so a folder the user
    symlinked into the dataset (``images -> /mnt/disk/images``) is followed, while an
    annotation file cannot reach outside the dataset by naming a path. A Windows path
    (``images\\a.jpg``, as LabelMe and CVAT write on Windows) is read with ``/`` where the file
    with the backslashes in its name does not exist.
    """
    base = Path(os.path.abspath(root))
    if "\\" in relative and os.sep == "/" and not (base / relative).exists():
        relative = relative.replace("\\", "/")
    path = Path(os.path.normpath(base / relative))
    if not path.is_relative_to(base):
        raise ValueError(f"{relative!r} resolves outside the dataset root {base}")
    return path


def dataset_root(root: str | os.PathLike | None) -> Path:
    """``root`` as a ``Path``, which must be an existing folder (else :class:`DataError`)."""
    if root is None:
        raise DataError("no dataset folder given")
    root = Path(root)
    if root.is_file():
        given = {
            ".yaml": "; an Ultralytics data.yaml is read with format: yolo",
            ".json": f"; a COCO json is read with format: coco, annotations: {root}, images: "
            "the folder its file_name entries are relative to",
        }
        raise DataError(
            f"dataset root {root} is a file, not a folder"
            + given.get(root.suffix.lower().replace(".yml", ".yaml"), "")
        )
    if not root.is_dir():
        raise DataError(
            f"dataset root {root} does not exist or is not a folder{read_from(root, ' (', ')')}"
            + folder_like(root)
        )
    return root


def folder_like(path: Path) -> str:
    """``"; did you mean <sibling>?"`` for the folders beside a missing ``path`` most like its
    name (``data/trian`` → ``data/train``), or ``""``."""
    close = folders_like(path)
    return f"; did you mean {' or '.join(map(str, close))}?" if close else ""


def folders_like(path: Path) -> list[Path]:
    """The (up to 2) folders beside ``path`` whose names are most like its name."""
    import difflib

    parent = path.parent if str(path.parent) else Path(".")
    try:
        folders = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    except OSError:
        return []
    close = difflib.get_close_matches(path.name, folders, n=2, cutoff=0.6)
    return [path.parent / c for c in close]


def read_from(path: str | os.PathLike, before: str = ", ", after: str = "") -> str:
    """Where a relative ``path`` is read from, for an error about it: ``", read from the
    current folder /home/me"`` (paths in configs are relative to the folder the command runs
    in, not to the config file); ``""`` for an absolute path."""
    if Path(path).is_absolute():
        return ""
    return f"{before}read from the current folder {Path.cwd()}{after}"


def collate(samples: Sequence[Sample], size_divisor: int = 32) -> dict[str, Any]:
    """Stack transformed Samples into a batch, padding images to a common size.

    Returns ``images`` float ``[B, 3, H, W]`` (H, W rounded up to ``size_divisor``),
    ``image_ids`` int64 ``[B]``, ``orig_sizes`` and ``image_sizes`` int64 ``[B, 2]``, ``class``
    int64 ``[B]`` (``-1`` where an image has no class label; absent if none has), ``identity``
    alike, and
    ``boxes`` / ``labels`` as per-image lists with ``has_boxes`` bool ``[B]`` when any has,
    ``masks`` as a per-image list of uint8 ``[N, H, W]`` padded to the batch size with
    ``has_masks`` bool ``[B]``, and ``semantic`` int64 ``[B, H, W]`` (padding and images
    without a label map are :data:`IGNORE_PIXEL`) with ``has_semantic`` bool ``[B]``, and
    ``keypoints`` as a per-image list of float ``[N, K, 3]`` (zeros where an image has
    none) with ``has_keypoints`` bool ``[B]``, and ``annotated_classes`` bool ``[B, C]``
    when an image carries it (every class for the images without).
    """
    heights = [s["image"].shape[-2] for s in samples]
    widths = [s["image"].shape[-1] for s in samples]
    h = math.ceil(max(heights) / size_divisor) * size_divisor
    w = math.ceil(max(widths) / size_divisor) * size_divisor
    first = samples[0]["image"]
    if all(x == h for x in heights) and all(x == w for x in widths):
        images = torch.stack([s["image"] for s in samples])
    else:
        images = first.new_zeros((len(samples), first.shape[0], h, w))
        for i, s in enumerate(samples):
            images[i, :, : s["image"].shape[-2], : s["image"].shape[-1]] = s["image"]
    batch: dict[str, Any] = {
        "images": images,
        "image_ids": torch.tensor([s["image_id"] for s in samples], dtype=torch.long),
        "orig_sizes": torch.tensor([s["orig_size"] for s in samples], dtype=torch.long),
        "image_sizes": torch.tensor([s["image_size"] for s in samples], dtype=torch.long),
    }
    for key in ("class", "identity"):  # image-level labels: -1 where an image has none
        if any(key in s for s in samples):
            batch[key] = torch.tensor([s.get(key, IGNORE_CLASS) for s in samples], dtype=torch.long)
    if any("boxes" in s for s in samples):
        batch["has_boxes"] = torch.tensor([("boxes" in s) for s in samples])
        batch["boxes"] = [s.get("boxes", torch.zeros(0, 4)) for s in samples]
        batch["labels"] = [s.get("labels", torch.zeros(0, dtype=torch.long)) for s in samples]
    if any("masks" in s for s in samples):
        batch["has_masks"] = torch.tensor([("masks" in s) for s in samples])
        batch["masks"] = [
            _pad_masks(s.get("masks"), len(s.get("labels", ())), h, w) for s in samples
        ]
    if any("semantic" in s for s in samples):
        semantic = torch.full((len(samples), h, w), IGNORE_PIXEL, dtype=torch.long)
        for i, s in enumerate(samples):
            if "semantic" in s:
                sh, sw = s["semantic"].shape
                semantic[i, :sh, :sw] = s["semantic"]
        batch["semantic"] = semantic
        batch["has_semantic"] = torch.tensor([("semantic" in s) for s in samples])
    if any("keypoints" in s for s in samples):
        batch.update(collate_keypoints(samples))
    if any("identities" in s for s in samples):
        batch["identities"] = collate_identities(samples)
    annotated = collate_annotated(samples)
    if annotated is not None:  # a mix of sets annotating different box classes
        batch[ANNOTATED] = annotated
    skipped = [record for s in samples for record in s.get("skipped", ())]
    if skipped:  # images replaced under on_bad_image: skip (counted by the data module)
        batch["skipped"] = skipped
    return batch


#: The batch key whose ``has_<key>`` flags mark the images carrying each label family that
#: is a per-image target, or each target of its own (``class`` and ``identity`` are marked by
#: :data:`IGNORE_CLASS`, box ``identities`` by -1).
FLAGGED_LABELS = {
    "instances": "boxes",
    "semantic": "semantic",
    "masks": "masks",
    "keypoints": "keypoints",
}


def labelled_images(batch: Mapping[str, Any], labels: str) -> torch.Tensor:
    """bool ``[B]``: the images of a collated batch that carry ``labels``: a label family (a
    head's :attr:`~visionkit.evaluation.tasks.TaskSpec.labels`) or a target that only some of
    its images carry (a head's ``term_labels``): ``class`` / ``identity`` not
    :data:`IGNORE_CLASS`, ``instances`` with ``has_boxes``, ``semantic``, ``masks``,
    ``keypoints`` with their ``has_`` flags (a batch without the key: none; with it but
    without the flags: every image, as the heads read it), ``identities`` with a box
    identity; every image for a family of one's own."""
    size = len(batch["images"])
    if labels in ("class", "identity"):
        values = batch.get(labels)
        if values is None:
            return torch.zeros(size, dtype=torch.bool)
        return torch.as_tensor(values).reshape(size).cpu() != IGNORE_CLASS
    if labels == "identities":
        ids = batch.get("identities")
        if ids is None:
            return torch.zeros(size, dtype=torch.bool)
        return torch.tensor([bool((torch.as_tensor(i) >= 0).any()) for i in ids])
    key = FLAGGED_LABELS.get(labels)
    if key is None:
        return torch.ones(size, dtype=torch.bool)
    if batch.get(key) is None:
        return torch.zeros(size, dtype=torch.bool)
    flags = batch.get(f"has_{key}")
    if flags is None:
        return torch.ones(size, dtype=torch.bool)
    return torch.as_tensor(flags, dtype=torch.bool).reshape(size).cpu()


def _pad_masks(masks: torch.Tensor | None, count: int, h: int, w: int) -> torch.Tensor:
    """Instance masks ``[N, h', w']`` zero-padded to ``[N, h, w]`` (zeros when absent)."""
    out = torch.zeros((count if masks is None else len(masks), h, w), dtype=torch.uint8)
    if masks is not None and len(masks):
        out[:, : masks.shape[-2], : masks.shape[-1]] = masks
    return out


def collate_keypoints(samples: Sequence[Sample]) -> dict[str, Any]:
    """``keypoints`` (per image float ``[N, K, 3]``, zeros for an image without) and
    ``has_keypoints`` bool ``[B]``.

    Raises:
        DataError: an image's keypoint rows do not match its boxes (a custom transform
            added or removed boxes without their keypoints), or the images disagree on K.
    """
    counts = {s["keypoints"].shape[1] for s in samples if "keypoints" in s}
    if len(counts) > 1:
        raise DataError(f"the images of a batch have different numbers of keypoints: {counts}")
    (count,) = counts
    out = []
    for s in samples:
        boxes = len(s.get("boxes", ()))
        points = s.get("keypoints")
        if points is not None and len(points) != boxes:
            raise DataError(
                f"image id {s['image_id']}: {len(points)} keypoint rows for {boxes} boxes; "
                "expected one row per box (a transform changed the boxes without their keypoints)"
            )
        out.append(points if points is not None else torch.zeros(boxes, count, 3))
    return {
        "keypoints": [torch.as_tensor(p, dtype=torch.float32) for p in out],
        "has_keypoints": torch.tensor([("keypoints" in s) for s in samples]),
    }


def collate_identities(samples: Sequence[Sample]) -> list[torch.Tensor]:
    """Per image int64 ``[N]``: each box's identity index (``-1``: none, and for every box of
    an image without ``identities``).

    Raises:
        DataError: an image's identities do not match its boxes (a custom transform added or
            removed boxes without their identities).
    """
    out = []
    for s in samples:
        boxes = len(s.get("boxes", ()))
        ids = s.get("identities")
        if ids is not None and len(ids) != boxes:
            raise DataError(
                f"image id {s['image_id']}: {len(ids)} identities for {boxes} boxes; "
                "expected one per box (a transform changed the boxes without their identities)"
            )
        out.append(torch.full((boxes,), -1) if ids is None else torch.as_tensor(ids))
    return [t.to(torch.long) for t in out]
