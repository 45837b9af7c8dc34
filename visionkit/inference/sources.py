"""What ``visionkit predict`` reads: image files, folders, glob patterns, videos and webcams,
turned into a stream of ``(source, frame, RGB image)`` that is decoded one image at a time.

Inputs become ``(source, output name)`` pairs (:func:`named_inputs`): a file, a folder (its
images and videos, recursively, sorted), a glob pattern, a ``.txt`` file listing inputs one a
line (as Ultralytics reads one), or a webcam index (``"0"``: an input made of digits that is
not a file; read with ``cv2.VideoCapture(0)``). Videos
(:data:`VIDEO_EXTENSIONS`) and webcams are read frame by frame with OpenCV (BGR converted to
RGB); :func:`iter_images` yields every image and predicted frame in order, so a caller that
takes a batch at a time never holds more than one batch of decoded images.

>>> named_inputs(["0"])
[(Webcam(index=0), 'webcam0')]
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.data.batch import (
    IMAGE_EXTENSIONS,
    is_inside,
    list_files,
    skipped_name,
    walk_files,
)
from visionkit.data.io import read_image
from visionkit.errors import DataError, ImageDecodeError
from visionkit.inference.input_files import (
    VIDEO_EXTENSIONS,
    globbed_files,
    is_glob,
    suffix_any_case,
)
from visionkit.inference.label_masks import label_masks, masks_said, spells_mask

logger = logging.getLogger(__name__)

#: an input file with this suffix lists inputs, one a line (Ultralytics' ``source="list.txt"``)
LIST_SUFFIX = ".txt"


@dataclass(frozen=True)
class Webcam:
    """A camera opened by its OpenCV index (``--input 0``); read until the stream ends,
    ``max_frames`` frames were predicted, or Ctrl-C."""

    index: int

    def __str__(self) -> str:
        return f"webcam {self.index}"


Source = Path | Webcam

#: frames per second of each webcam opened by read_video (a camera is opened once at a time)
_WEBCAM_FPS: dict[int, float] = {}


def is_video(path: str | os.PathLike | Webcam) -> bool:
    """Whether ``path`` is read frame by frame: a webcam, or a file with a video extension
    (:data:`VIDEO_EXTENSIONS`)."""
    return isinstance(path, Webcam) or Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(
    inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike | None = None
) -> list[Source]:
    """Files, folders (their images and videos, recursively, sorted), glob patterns and webcam
    indices → sources, each once; see :func:`named_inputs`."""
    return [path for path, _ in named_inputs(inputs, output_dir)]


def webcam_index(text: str) -> int | None:
    """The camera index of an input such as ``"0"`` (digits naming no file), else ``None``."""
    return int(text) if text.isdigit() and not Path(text).exists() else None


def is_url(text: str) -> bool:
    """Whether an input names a URL or a stream (``https://``, ``rtsp://``), which is not read."""
    return "://" in text


def named_inputs(
    inputs: Iterable[str | os.PathLike | int] | str | os.PathLike | int,
    output_dir: str | os.PathLike | None = None,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[tuple[Source, str]]:
    """Files, folders (their images and videos, recursively, sorted), glob patterns, ``.txt``
    lists of those (:func:`listed_inputs`) and webcam indices → ``(source, output name)`` in
    input order, a file named twice kept once.

    The output name is the path relative to the common folder of the inputs (a folder input
    counts as itself, a file as its folder, a glob as its folder before the first wildcard),
    with ``/`` separators and the suffix kept: unique (two files never share one) and
    stable (it depends on the inputs given, not on what else is in the folders). A webcam is
    named ``webcam<index>``.

    Nothing inside ``output_dir`` is read: folders and globs skip it (a glob's skipped files
    are logged), and a file or folder input inside it is refused. Folders and globs leave out
    the label masks beside their images (``a_mask.png`` beside ``a.jpg``:
    :mod:`~visionkit.inference.label_masks`), logged once. Folders and globs skip the
    folders of ``exclude`` too (earlier output folders) unless they are inside one.

    Raises:
        DataError: inputs not found, inputs inside ``output_dir``, or no image at all.
    """
    one = isinstance(inputs, (str, os.PathLike, int))  # one file, folder, glob or webcam
    given = [inputs] if one else list(inputs)
    inputs = [item for entry in given for item in listed_inputs(entry)]
    out = [Path(os.path.realpath(output_dir))] if output_dir is not None else []
    earlier = [Path(os.path.realpath(folder)) for folder in exclude]

    def skipped(root: Path) -> list[Path]:  # an input inside an earlier output is read
        return out + [folder for folder in earlier if not is_inside(root, [folder])]

    found: list[tuple[Source, Path | None]] = []  # (source, the folder it was found from)
    missing, inside, globbed_out, masked = [], [], [], []
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    for item in inputs:
        text = str(item)
        path = Path(text)
        if isinstance(item, int) or (isinstance(item, str) and webcam_index(text) is not None):
            found.append((Webcam(int(text)), None))
        elif (path.is_dir() or path.is_file()) and out and is_inside(path, out):
            inside.append(text)
        elif path.is_dir():
            listed = list_files(path, known, exclude=skipped(path))
            masks = set(label_masks(listed))
            masked += sorted(masks)
            found += [(p, path) for p in listed if p not in masks]
        elif path.is_file():
            found.append((path, path.parent))
        elif is_glob(text):
            root = Path(*itertools.takewhile(lambda part: not is_glob(part), path.parts))
            skip = skipped(root)
            matched = [Path(m) for m in globbed_files(text)]
            globbed_out += [str(m) for m in matched if skip and is_inside(m, skip)]
            kept = [m for m in matched if not (skip and is_inside(m, skip))]
            masks = set() if spells_mask(text) else set(label_masks(kept))
            masked += sorted(masks)
            found += [(m, root) for m in kept if m not in masks]
        else:
            missing.append(text)
    urls = [m for m in missing if is_url(m)]
    if urls:  # Ultralytics reads URLs and streams; visionkit reads local files only
        raise DataError(
            "URLs and streams are not read, only local files, folders, globs, .txt lists and "
            "webcam indices: download the file first (e.g. curl -LO URL) and give its path:",
            urls,
        )
    if missing:
        raise DataError("inputs not found:", missing)
    if inside:
        raise DataError(
            f"inputs inside the output folder {output_dir}, where predictions are written "
            "(they would be read back as inputs); choose another --output-dir:",
            inside,
        )
    if globbed_out:
        folders = ", ".join(map(str, [output_dir, *exclude] if output_dir else exclude))
        logger.warning(
            "skipped %d file(s) matched inside the output folder(s) %s, e.g. %s (name an "
            "earlier output folder as an input to read it)",
            len(globbed_out),
            folders,
            globbed_out[0],
        )
    unique: dict[str, tuple[Source, Path | None]] = {}
    for source, root in found:
        key = f"webcam:{source.index}" if isinstance(source, Webcam) else os.path.abspath(source)
        unique.setdefault(key, (source, root))
    if not unique:
        raise DataError(no_images_message(given, skipped))
    left_out = {os.path.abspath(m): m for m in masked}  # each once, less those read after all
    masked = [m for key, m in left_out.items() if key not in unique]
    if masked:
        logger.warning("left out %s", masks_said(masked))
    files = {key: (s, r) for key, (s, r) in unique.items() if r is not None}
    folders = [os.path.abspath(root) for _, root in files.values()]
    common = os.path.commonpath(folders + [os.path.dirname(a) for a in files]) if files else ""
    return [
        (s, f"webcam{s.index}")
        if isinstance(s, Webcam)
        else (s, Path(os.path.relpath(key, common)).as_posix())
        for key, (s, _) in unique.items()
    ]


def no_images_message(
    given: Sequence[Any], skipped: Callable[[Path], list[Path]] = lambda root: []
) -> str:
    """Why ``given`` (folders, globs) gave no image, from the walk :func:`named_inputs` reads
    them with (:func:`~visionkit.data.batch.walk_files`): an empty folder, or for each kind of
    file left out one named: hidden/system files, other suffixes, files inside an output
    folder (``skipped(root)``: the folders never read below ``root``, resolved); a pattern
    that matches no file, or only folders; and the suffixes that are read."""
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    said = []
    for item in map(str, given):
        path, why = Path(item), []
        if path.is_dir():
            hidden: list[Path] = []
            files = list(walk_files(path, not_entered=hidden))
            hidden = [f for h in hidden for f in itertools.islice(walk_files(h), 1)]
            hidden += [f for f in files if any(map(skipped_name, f.relative_to(path).parts))]
            hidden, files = sorted(hidden), sorted(f for f in files if f not in hidden)
            other = [f for f in files if f.suffix.lower() not in known]
            inside = [f for f in files if f not in other]
            masks = label_masks(inside)
            read = f"a glob spelling out _mask reads them: '{path / '**' / '*_mask.png'}'"
            why = _buckets(hidden, other, inside, skipped(path), masks, read)
            why = why or ["an empty folder"]
        elif is_glob(item):
            matched = sorted(glob.glob(suffix_any_case(item), recursive=True))
            files = [m for m in matched if Path(m).is_file()]
            read = globbed_files(item)
            hidden = [Path(m) for m in files if m not in read]
            root = Path(*itertools.takewhile(lambda part: not is_glob(part), path.parts))
            masks = [] if spells_mask(item) else label_masks(map(Path, read))
            how = "spell out _mask in the glob to read them"
            why = _buckets(hidden, [], [Path(m) for m in read], skipped(root), masks, how)
            if matched and not files:
                below = f"{item.rstrip('/' + os.sep)}/**"
                why = [
                    f"only folders, e.g. {matched[0]}: give a folder, or '{below}' for its files"
                ]
            why = why or ["no file"]
        said.append(f"{item} ({'; '.join(why)})" if why else item)
    return f"no images found in {', '.join(said)}; read are the suffixes {' '.join(known)} (in any case)"


def _buckets(
    hidden: list[Path],
    other: list[Path],
    inside: list[Path],
    out: list[Path],
    masks: list[Path],
    read_masks: str,
) -> list[str]:
    """:func:`no_images_message`'s reasons: each kind of file left out, one named (label
    masks with ``read_masks``, how to read them)."""
    why = [f"hidden/system files, e.g. {hidden[0]}"] if hidden else []
    why += [f"other suffixes, e.g. {other[0]}"] if other else []
    why += [f"label masks beside their images, e.g. {masks[0]} ({read_masks})"] if masks else []
    for folder in out:
        held = [f for f in inside if is_inside(f, [folder])]
        why += [f"inside output folder {folder}, e.g. {held[0]}"] if held else []
    return why


def listed_inputs(item: str | os.PathLike | int) -> list[str | os.PathLike | int]:
    """The inputs a ``.txt`` file lists, one a line (files, folders, globs; blank lines and
    ``#`` comments skipped), or ``[item]`` for any other input. A relative line is read from
    the current folder, else from the list file's folder, as Ultralytics reads such a file.

    Raises:
        DataError: the list cannot be read, or names inputs found in neither place (each
            with its line number).
    """
    path = Path(str(item))
    if not isinstance(item, int) and path.suffix.lower() in (".csv", ".tsv") and path.is_file():
        raise DataError(csv_input_message(path))
    if isinstance(item, int) or path.suffix.lower() != LIST_SUFFIX or not path.is_file():
        return [item]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the input list {path}: {err}") from err
    listed, missing = [], []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        beside = Path(os.path.normpath(path.parent / line))
        if Path(line).exists() or is_glob(line) or is_url(line) or webcam_index(line) is not None:
            listed.append(line)  # a URL is told below what is read; digits: a webcam
        elif beside.exists():
            listed.append(str(beside))
        else:
            missing.append(f"line {number}: {line} (nor {beside})")
    if missing:
        raise DataError(f"inputs listed in {path} not found:", missing)
    return listed


def csv_input_message(path: Path) -> str:
    """What an input that is a CSV (Kaggle's ``test.csv``, ``format: csv``'s table) is told:
    the images are read, not the table; a folder beside it named after it is suggested."""
    near = (
        sorted(p.name for p in path.parent.glob(f"{path.stem}*") if p.is_dir())
        if path.parent.is_dir()
        else []
    )
    folder = path.parent / (near[0] if near else f"{path.stem}_images")
    return (
        f"{path} is a CSV file: give the image folder, e.g. --input {folder}/ (predict reads "
        "images, videos and .txt lists of them)"
    )


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:  # pragma: no cover - depends on the environment
        raise DataError(
            "videos are read with OpenCV (cv2), which is not installed although visionkit "
            "depends on it: pip install opencv-python-headless"
        ) from None
    return cv2


def _open_video(source: Source) -> Any:
    cv2 = _cv2()
    if isinstance(source, Webcam):
        capture = cv2.VideoCapture(source.index)
        if not capture.isOpened():
            capture.release()
            raise DataError(
                f"cannot open {source} (cv2.VideoCapture({source.index}) found no camera "
                "there); check the camera index, or give a file"
            )
        return capture
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"cannot read video {source} (OpenCV could not open it)")
    return capture


def video_frames(
    path: str | os.PathLike | Webcam, every: int = 1, max_frames: int | None = None
) -> int | None:
    """How many frames of the video ``path`` are predicted on (as far as its header says, at
    most ``max_frames``); for a webcam ``max_frames`` (``None``: unknown)."""
    if isinstance(path, Webcam):
        return max_frames
    capture = _open_video(Path(path))
    try:
        count = int(capture.get(_cv2().CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    frames = -(-max(count, 0) // every)
    return frames if max_frames is None else min(frames, max_frames)


def video_fps(path: str | os.PathLike | Webcam) -> float:
    """Frames per second of the video or webcam ``path`` (25 when it does not say). A webcam
    is not opened twice: its rate is the one :func:`read_video` read when it opened it."""
    if isinstance(path, Webcam):
        return _WEBCAM_FPS.get(path.index) or 25.0
    capture = _open_video(Path(path))
    try:
        fps = float(capture.get(_cv2().CAP_PROP_FPS))
    finally:
        capture.release()
    return fps if fps > 0 else 25.0


def read_video(
    path: str | os.PathLike | Webcam, every: int = 1, max_frames: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, H×W×3 uint8 RGB frame)`` for frames ``0, every, 2 * every, ...`` of a
    video file or webcam, at most ``max_frames`` of them (``None``: until the stream ends)."""
    cv2 = _cv2()
    capture = _open_video(path if isinstance(path, Webcam) else Path(path))
    if isinstance(path, Webcam):
        _WEBCAM_FPS[path.index] = max(float(capture.get(cv2.CAP_PROP_FPS) or 0), 0.0)
    try:
        index, taken = 0, 0
        while max_frames is None or taken < max_frames:
            if index % every == 0:
                ok, frame = capture.read()
                if not ok:
                    break
                taken += 1
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif not capture.grab():  # skipped frames are not decoded
                break
            index += 1
    finally:
        capture.release()


def iter_images(
    paths: Sequence[Source],
    every: int = 1,
    max_frames: int | None = None,
    skipped: list[ImageDecodeError] | None = None,
) -> Iterator[tuple[Source, int | None, np.ndarray]]:
    """``(source, frame index or None, RGB image)`` for every image file and predicted video
    or webcam frame of ``paths``, in order, decoded one at a time (``max_frames``: at most so
    many frames of each video or webcam). An image file that cannot be read raises
    :class:`~visionkit.errors.ImageDecodeError`, or with a ``skipped`` list is logged as a
    warning, added to the list and left out."""
    for path in paths:
        if is_video(path):
            for index, frame in read_video(path, every, max_frames):
                yield path, index, frame
            continue
        try:
            image = read_image(path)
        except ImageDecodeError as err:
            if skipped is None:
                raise
            logger.warning("skipping an unreadable image: %s", err)
            skipped.append(err)
            continue
        yield path, None, image


class VideoWriters:
    """``<name>_pred.mp4`` per video or webcam (``cv2.VideoWriter``, mp4v), opened at its
    first frame; frames of another size than the first are padded or cut at the bottom/right.

    A video is written as ``<name>_pred.partial.mp4`` and renamed to ``<name>_pred.mp4`` when
    it is finished (:meth:`close`), so a file of that name is always a whole video: one from an
    earlier run stays as it was until the new one is complete, and :meth:`abort` (an error)
    removes the partial file and keeps it."""

    def __init__(self, out_dir: Path, every: int) -> None:
        self.out_dir = out_dir
        self.every = every
        self.path: Source | None = None
        self.writer: Any = None
        self.size: tuple[int, int] = (0, 0)
        self.target: Path | None = None

    def write(self, path: Source, rgb: np.ndarray, name: str) -> None:
        """Append the drawn frame ``rgb`` of ``path`` to ``<name>_pred.mp4``."""
        cv2 = _cv2()
        if path != self.path:
            self.close()
            self.path, self.size = path, (rgb.shape[0], rgb.shape[1])
            self.target = self.out_dir / f"{name}_pred.mp4"
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            fps = video_fps(path) / self.every
            size = (self.size[1], self.size[0])
            self.writer = cv2.VideoWriter(str(self._partial()), fourcc, fps, size)
            if not self.writer.isOpened():
                target = self.target
                self.abort()
                raise DataError(f"cannot write video {target} (OpenCV has no mp4v encoder)")
        h, w = self.size
        frame = np.zeros((h, w, 3), np.uint8)
        frame[: min(h, rgb.shape[0]), : min(w, rgb.shape[1])] = rgb[:h, :w]
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def _partial(self) -> Path:
        assert self.target is not None
        return self.target.with_name(self.target.name.removesuffix(".mp4") + ".partial.mp4")

    def close(self) -> None:
        """Finish the video being written, if any: ``<name>_pred.mp4`` becomes it."""
        if self.writer is not None:
            self.writer.release()
            os.replace(self._partial(), self.target)
        self.path, self.writer, self.target = None, None, None

    def abort(self) -> None:
        """Stop the video being written, if any, and remove it; an earlier ``<name>_pred.mp4``
        is kept."""
        if self.writer is not None:
            self.writer.release()
        if self.target is not None:
            self._partial().unlink(missing_ok=True)
        self.path, self.writer, self.target = None, None, None
