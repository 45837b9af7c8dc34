r"""Palettes of colour-coded label images: the file that says which RGB colour stands for which
class (CamVid's ``label_colors.txt``, CVAT's ``labelmap.txt``, a JSON / YAML list), and the
vectorised mapping of an RGB label image to class indices (:meth:`Palette.labels_of`). Used by
the mask-folder reader (``palette: FILE``, :mod:`visionkit.data.readers.mask_folder`).

>>> import numpy as np, pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "label_colors.txt"
>>> _ = path.write_text("128 128 128\tSky\n0 0 0\tVoid\n128 0 0\tBuilding\n")
>>> palette = read_palette(path)
>>> palette.names
['Sky', 'Building']
>>> palette.labels_of(np.array([[[128, 0, 0], [0, 0, 0], [128, 128, 128]]], np.uint8), path)
array([[  1, 255,   0]], dtype=uint8)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from visionkit.data.batch import IGNORE_PIXEL
from visionkit.data.readers.lossy_labels import LOSSLESS, looks_lossy
from visionkit.errors import AnnotationError, ConfigError, DataError, counted

#: Palette entry names (compared in lower case) that mark unlabelled pixels, not a class.
VOID_NAMES = ("void",)

#: palette files a mask folder's root may hold as published (CamVid's, and plain names)
PALETTE_FILES = (
    "label_colors.txt",
    "label_colours.txt",
    "labelmap.txt",
    "palette.txt",
    "palette.json",
)


#: Pascal VOC's 21 classes, in label order.
VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]

#: Palettes known by name (``palette: voc``, the bare name only), used where ``root`` holds
#: no file of the name (:func:`palette_source`).
BUILT_IN_PALETTES = ("voc", "cityscapes")


def voc_colour(index: int) -> tuple[int, int, int]:
    """The colour of ``index`` in Pascal VOC's colormap (the bits of the index interleaved
    into R, G and B from the top bit down: 1 → (128, 0, 0), 255 → (224, 224, 192))."""
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= ((index >> 0) & 1) << shift
        g |= ((index >> 1) & 1) << shift
        b |= ((index >> 2) & 1) << shift
        index >>= 3
    return r, g, b


def built_in_entries(name: str) -> list[tuple[str, str, tuple[int, int, int]]]:
    """``(where, name, colour)`` of a built-in palette: ``voc``, VOC's 21 classes and its
    border colour 255 as void; ``cityscapes``, the 19 classes of its train ids in their order
    (torchvision's ``Cityscapes.classes``) and the colours of its other labels as void (those
    sharing a class's colour, polegroup's and license plate's, left to the class)."""
    if name == "voc":
        entries = [(f"voc {k}", n, voc_colour(k)) for k, n in enumerate(VOC_CLASSES)]
        return [*entries, ("voc 255", "void", voc_colour(255))]
    from torchvision.datasets import Cityscapes

    labels = Cityscapes.classes
    trained = sorted(
        (c for c in labels if 0 <= c.train_id < IGNORE_PIXEL), key=lambda c: c.train_id
    )
    entries = [(f"cityscapes {c.name}", c.name, tuple(c.color)) for c in trained]
    used = {colour for _, _, colour in entries}
    for c in labels:
        if tuple(c.color) not in used:
            used.add(tuple(c.color))
            entries.append((f"cityscapes {c.name}", "void", tuple(c.color)))
    return entries


def palette_source(root: str | os.PathLike, palette: str) -> Path | str:
    """What a mask folder's ``palette`` names: the file ``root / palette`` (``palette``
    itself when absolute), or, for exactly a bare built-in name (``voc``) where ``root`` holds
    no file of that name, the name (:func:`read_palette` reads it as built in). The one
    reading of the setting, for the reader and for comparing splits."""
    path = Path(root) / palette
    return palette if palette in BUILT_IN_PALETTES and not path.is_file() else path


def published_palette(root: Path) -> str | None:
    """The name of the first of :data:`PALETTE_FILES` in ``root``, or ``None``."""
    return next((name for name in PALETTE_FILES if (root / name).is_file()), None)


@dataclass(frozen=True)
class Palette:
    """The colours of RGB label images and the label each stands for.

    Attributes:
        path: the palette file.
        names: the class names, in label order (void entries left out).
        colours: int64 ``[K]``, each colour packed as ``R << 16 | G << 8 | B``, ascending.
        labels: uint8 ``[K]``, the label of ``colours[k]``: a class index, or
            :data:`~visionkit.data.batch.IGNORE_PIXEL` for a void colour.
    """

    path: Path
    names: list[str]
    colours: np.ndarray
    labels: np.ndarray

    def labels_of(self, rgb: np.ndarray, where: str | os.PathLike) -> np.ndarray:
        """The uint8 ``[H, W]`` label map of an RGB label image ``[H, W, 3]`` (a sorted
        lookup of the packed colours, no per-pixel Python). An RGBA one ``[H, W, 4]``
        (Cityscapes' ``_gtFine_color.png``, written RGBA by its ``json2labelImg``) is read by
        its colours where every pixel is opaque (alpha 255).

        Raises:
            AnnotationError: colours the palette lacks, each with its pixel count; pixels
                that are not opaque (a transparent pixel's colour says no class).
        """
        if rgb.shape[-1] == 4:
            rgb = _opaque(rgb, where)
        packed = pack_colours(rgb)  # [H, W]
        index = np.minimum(np.searchsorted(self.colours, packed), len(self.colours) - 1)
        known = self.colours[index] == packed
        if not known.all():
            colours, counts = np.unique(packed[~known], return_counts=True)
            order = np.argsort(-counts, kind="stable")[:10]
            listed = ", ".join(
                f"{unpack_colour(colours[i])} in {counts[i]} pixels" for i in order.tolist()
            )
            more = f" (and {len(colours) - 10} more)" if len(colours) > 10 else ""
            fix = (
                "add them to the palette (an entry named void marks unlabelled pixels) or set "
                "void_color"
            )
            ours, present = np.unique(packed[known], return_counts=True)
            pixels = np.zeros(len(self.colours), np.int64)  # of each palette colour
            pixels[np.searchsorted(self.colours, ours)] = present
            rgb = np.array([unpack_colour(c) for c in self.colours])
            void = self.labels == IGNORE_PIXEL
            off = [unpack_colour(c) for c in colours]
            if looks_lossy(off, counts, rgb[~void], pixels[~void], rgb[void].reshape(-1, 3)):
                fix = (
                    f"they are near the palette's own colours, as compression noise is: {LOSSLESS}"
                )
            raise AnnotationError(
                f"{where}: {counted(len(colours), 'colour')} not in the palette {self.path}: "
                f"{listed}{more}; {fix}"
            )
        return self.labels[index]

    def class_colours(self) -> list[list[int]]:
        """``[R, G, B]`` of each class, in class order (the first colour of a class listed
        twice), for drawing predictions in the dataset's own colours."""
        return [
            list(unpack_colour(self.colours[np.flatnonzero(self.labels == k)[0]]))
            for k in range(len(self.names))
        ]


def _opaque(rgba: np.ndarray, where: str | os.PathLike) -> np.ndarray:
    """The RGB colours of an RGBA label image ``[H, W, 4]`` whose alpha is 255 everywhere."""
    clear = rgba[..., 3] != 255
    if clear.any():
        raise AnnotationError(
            f"{where}: an RGBA label image with {int(clear.sum())} of {clear.size} pixels not "
            f"opaque (alpha {int(rgba[..., 3].min())} at least): a colour label image says "
            "each pixel's class by its colour, which a transparent pixel does not show; save "
            "it as RGB with every pixel in a palette colour (unlabelled ones in a void colour)"
        )
    return rgba[..., :3]


def pack_colours(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` uint8 colours as int64 ``R << 16 | G << 8 | B``."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_colour(packed: int) -> tuple[int, int, int]:
    """The ``(R, G, B)`` of a packed colour."""
    packed = int(packed)
    return packed >> 16, (packed >> 8) & 255, packed & 255


def read_palette(path: str | os.PathLike, void_color: Sequence[int] | None = None) -> Palette:
    """Read a palette file: the class colours of RGB label images, in class order.

    Formats: text lines ``R G B name`` (whitespace or a tab between; CamVid's
    ``label_colors.txt``) or ``name:R,G,B:parts:actions`` (the ``labelmap.txt`` of CVAT's
    "Segmentation mask" export; blank lines and lines starting with ``#`` skipped), or a JSON / YAML
    (``.json``, ``.yaml``, ``.yml``) list of ``{name: ..., color: [R, G, B]}``. An entry named
    ``void`` (any case), or of the colour ``void_color``, marks unlabelled pixels: it is no
    class, and its pixels become :data:`~visionkit.data.batch.IGNORE_PIXEL`. ``path``
    exactly ``"voc"`` or ``"cityscapes"`` (a bare name, a ``str``) is the built-in palette
    (:func:`built_in_entries`); a path ending in that name is a file like any other.

    Raises:
        DataError: the file is missing or unreadable, an entry is malformed (its line or
            position named), a colour is listed twice, or there are more than 255 classes.
    """
    if isinstance(path, str) and path in BUILT_IN_PALETTES:  # a bare name, never a file's
        entries, problems, path = built_in_entries(path), [], Path(path)
    else:
        path = Path(path)
        entries, problems = _file_entries(path)
    void = None
    if void_color is not None:
        if len(void_color) != 3 or any(not 0 <= int(c) <= 255 for c in void_color):
            raise ConfigError(f"void_color: expected [R, G, B] of 0..255, got {list(void_color)}")
        void = tuple(int(c) for c in void_color)
    seen: dict[tuple[int, int, int], str] = {}
    for where, _, colour in entries:
        if colour in seen:
            problems.append(f"{where}: colour {colour} is also {seen[colour]}")
        seen.setdefault(colour, where)
    if not entries and not problems:
        problems.append("no colours listed")
    if problems:
        raise DataError(
            f"palette {path}: expected lines 'R G B name', lines 'name:R,G,B::' (CVAT's "
            "labelmap.txt) or a JSON/YAML list of {name, color: [R, G, B]}:",
            problems,
        )
    names: list[str] = []
    colours, labels = [], []
    for _, name, colour in entries:
        is_void = name.lower() in VOID_NAMES or colour == void
        colours.append(colour)
        labels.append(IGNORE_PIXEL if is_void else len(names))
        if not is_void:
            names.append(name)
    if void is not None and void not in seen:
        colours.append(void)
        labels.append(IGNORE_PIXEL)
    if len(names) >= IGNORE_PIXEL:
        raise DataError(f"palette {path}: {len(names)} classes; at most {IGNORE_PIXEL - 1}")
    packed = pack_colours(np.array(colours, np.uint8))
    order = np.argsort(packed)
    return Palette(path, names, packed[order], np.array(labels, np.uint8)[order])


def _file_entries(path: Path) -> tuple[list[tuple[str, str, tuple[int, int, int]]], list[str]]:
    """``(where, name, colour)`` of each entry of a palette file, and the malformed ones."""
    if not path.is_file():
        raise DataError(
            f"palette {path} does not exist (palette is a file relative to the root, or "
            f"absolute, or exactly the name of a built-in one: {', '.join(BUILT_IN_PALETTES)})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the palette {path}: {err}") from None
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        return _structured_entries(text)
    return _text_entries(text)


def _text_entries(text: str) -> tuple[list[tuple[str, str, tuple[int, int, int]]], list[str]]:
    """``(where, name, colour)`` of each ``R G B name`` line, and the malformed lines."""
    entries, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 3)
        colour = _colour(parts[:3])
        name = parts[3].strip() if len(parts) == 4 else ""
        if colour is None and ":" in line:  # CVAT's name:R,G,B:parts:actions
            name, _, rest = line.partition(":")
            colour = _colour([v.strip() for v in rest.split(":")[0].split(",")])
            name = name.strip()
        if not name or colour is None:
            problems.append(f"line {number}: {line!r}")
            continue
        entries.append((f"line {number}", name, colour))
    return entries, problems


def _structured_entries(
    text: str,
) -> tuple[list[tuple[str, str, tuple[int, int, int]]], list[str]]:
    """``(where, name, colour)`` of each ``{name, color}`` of a JSON / YAML list."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return [], [f"not JSON or YAML: {err}"]
    if not isinstance(data, list):
        return [], [f"expected a list, got {type(data).__name__}"]
    entries, problems = [], []
    for i, item in enumerate(data):
        name = item.get("name") if isinstance(item, Mapping) else None
        colour = _colour(item.get("color")) if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name or colour is None:
            problems.append(f"entry {i}: {item!r}")
            continue
        entries.append((f"entry {i} ({name})", name, colour))
    return entries, problems


def _colour(values: Any) -> tuple[int, int, int] | None:
    """``(R, G, B)`` of three integers 0..255 (ints or digit strings), else ``None``."""
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != 3:
        return None
    out = []
    for v in values:
        if isinstance(v, str) and v.isdigit():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
            return None
        out.append(v)
    return out[0], out[1], out[2]
