"""Random train / val (/ test) splits of a dataset as it was published, written in the files
its reader already takes (``visionkit split``):

* a **VOC folder** (``Annotations/`` + ``JPEGImages/``, ``annotations/`` + ``images/``, or
  folders named with ``annotations=`` / ``images=``): ``ImageSets/Main/train.txt``,
  ``val.txt`` (``test.txt``), one id (an XML file's stem) per line, for ``split: train`` /
  ``split: val`` of ``format: voc``;
* a **YOLO folder** (``images/`` + ``labels/``, class names in ``classes.txt`` or
  ``data.yaml``; or CVAT's YOLO 1.1 export, ``obj.data``): Ultralytics' ``autosplit_train.txt``, ``autosplit_val.txt``
  (``autosplit_test.txt``), one image path per line (``./images/a.jpg``), and
  ``autosplit.yaml`` naming them with the classes, for ``root: SRC/autosplit.yaml`` of
  ``format: yolo`` (or Ultralytics itself);
* a **mask folder** (``images/`` + ``masks/``, VOC's ``JPEGImages/`` +
  ``SegmentationClass/``, or folders named with ``images=`` / ``masks=``):
  ``splits/train.txt``, ``val.txt`` (``test.txt``), one image path per line relative to the
  images folder, for ``split: train`` of ``format: mask_folder``
  (:mod:`visionkit.data.split_masks`);
* a **folder of class folders** (``<class>/<image>``, what ``format: folder`` reads):
  ``splits/train.txt``, ``val.txt`` (``test.txt``), one ``<class>/<image>`` per line, the
  classes in the same proportions in each split (stratified,
  :func:`~visionkit.data.split_shares.class_shares`), for ``split: train`` of ``format:
  folder`` (:mod:`visionkit.data.split_classes`);
* a **LabelMe folder** (one LabelMe json file per image): ``splits/train.txt``, ``val.txt``
  (``test.txt``), one json file per line relative to the folder, for ``split: train`` of
  ``format: labelme`` (:mod:`visionkit.data.split_labelme`);
* a **CSV** of ``(image, label)`` rows: ``<stem>_train.csv``, ``<stem>_val.csv``
  (``<stem>_test.csv``) beside it, the labels in the same proportions in each, for ``csv:``
  of ``format: csv`` (:mod:`visionkit.data.split_csv`);
* a **COCO json**: ``<stem>_train.json``, ``<stem>_val.json`` (``<stem>_test.json``) beside
  it, each with its images, their annotations and every category, for ``annotations:`` of
  ``format: coco``.

The split is a seeded shuffle of the sorted ids, so the same seed gives the same split on
any machine. Existing split files are never replaced unless ``overwrite`` is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionkit.checkpoint import write_atomic
from visionkit.choices import SPLITS
from visionkit.data.convert.voc import ANNOTATION_DIRS
from visionkit.data.readers.voc_segmentation import VOC_SEGMENTATION_LISTS
from visionkit.data.split_shares import assign
from visionkit.data.split_shares import split_counts as split_counts
from visionkit.errors import DataError, counted


def read_list(file: Path, root: Path) -> list[str]:
    """The lines of a split list (a VOC ``ImageSets/Main`` file, a mask folder's
    ``splits/`` file), stripped, blank lines and ``#`` comments left out (a byte-order mark
    too). A missing file is an error naming the lists beside it, or else the
    ``visionkit split`` command that writes them; an empty one is an error too.

    Raises:
        DataError: the file does not exist or lists nothing.
    """
    if not file.is_file():
        available = sorted(p.stem for p in file.parent.glob("*.txt"))
        if not available:
            hint = (
                f"; write train / val lists with: visionkit split {root} --val 0.2, or, to read "
                "every image of the folder (one held out already, say), leave split out of its "
                "entry (data.val.split=null on the command line for data.val)"
            )
        elif file.stem == "test" and "test" not in available:  # split without --test
            hint = (
                f" (splits in {file.parent}: {available}); to hold out a test split too: "
                f"visionkit split {root} --val 0.2 --test 0.1 --overwrite (new lists)"
            )
        else:
            hint = f" (splits in {file.parent}: {available})"
        raise DataError(f"split file {file} does not exist{hint}")
    lines = (line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines())
    names = [line for line in lines if line and not line.startswith("#")]
    if not names:
        raise DataError(f"split file {file} lists no images")
    return names


def split_list_file(root: Path, split: str) -> Path:
    """The list file a reader's ``split`` names: ``root/splits/<split>.txt`` for a name (else
    VOC's ``root/ImageSets/Segmentation/<split>.txt`` when only that exists), the path itself
    (relative to ``root``) for a ``.txt`` file or a path with a separator."""
    path_like = split.endswith(".txt") or "/" in split or "\\" in split
    file = Path(split.replace("\\", "/")) if path_like else Path("splits") / f"{split}.txt"
    if not path_like and not (root / file).exists():
        voc = root / VOC_SEGMENTATION_LISTS / f"{split}.txt"
        if voc.is_file():
            return voc
    return file if file.is_absolute() else root / file


@dataclass
class SplitReport:
    """What :func:`split_dataset` wrote: the format, and per split its file and count."""

    kind: str  # "voc", "yolo", "masks", "classes", "labelme", "csv" or "coco"
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    folders: str = (
        ""  # the mask folder's sub-folders, a CSV's images, as config keys (", images: X")
    )
    classes: list[str] = field(default_factory=list)  # LabelMe: the labels of every file
    notes: list[str] = field(default_factory=list)  # printed last (e.g. images without labels)

    def summary(self) -> str:
        """Lines for the terminal: each file with its count, then how a config reads them."""
        lines = [f"wrote {self.files[s]} ({counted(self.counts[s], 'image')})" for s in self.counts]
        if "yaml" in self.files:
            lines.append(f"wrote {self.files['yaml']} (path, the split lists and the names)")
        root = self.root
        if self.kind == "voc":
            lines.append(
                f"read them with format: voc, root: {root}, split: train (split: val for val), "
                f"as configs/custom/detect_fcos_r18.yaml does: data.train.root={root} "
                f"data.val.root={root}"
            )
        elif self.kind == "masks":
            lines.append(
                f"read them with format: mask_folder, root: {root}{self.folders}, split: train "
                f"(split: val for val), e.g. data.train='{{format: mask_folder, root: {root}"
                f"{self.folders}, split: train}}'"
            )
        elif self.kind == "classes":
            lines.append(
                f"read them with format: folder, root: {root}, split: train (split: val for "
                f"val), e.g. with configs/custom/classify_r18.yaml: data.train.root={root} "
                f"data.train.split=train data.val.root={root} data.val.split=val"
            )
        elif self.kind == "labelme":  # every label, so that a split lacking one numbers alike
            from visionkit.config.yaml_rules import dump_yaml  # read back as a config reads it

            names = f", class_names: {dump_yaml(self.classes).strip()}" if self.classes else ""
            lines.append(
                f"read them with format: labelme, root: {root}, split: train (split: val for "
                f"val){names} (the labels of every json file, sorted: the same class ids in "
                f"every split), e.g. data.train='{{format: labelme, root: {root}, split: "
                f"train{names}}}'"
            )
        elif self.kind == "csv":
            lines.append(
                f"read them with format: csv, csv: {self.files['train']} (val: "
                f"{self.files['val']}){self.folders}, e.g. data.train='{{format: csv, csv: "
                f"{self.files['train']}{self.folders}}}'"
            )
        elif self.kind == "yolo":
            lines.append(
                f"read them with format: yolo, root: {root}, split: train (split: val for "
                f"val), e.g. data.train='{{format: yolo, root: {root}, "
                "split: train}'"
            )
        else:
            lines.append(
                f"read them with format: coco, annotations: {self.files['train']} (val: "
                f"{self.files['val']}) and images: the folder their file_names are relative "
                f"to, e.g. data.train='{{format: coco, images: IMAGES, annotations: "
                f"{self.files['train']}}}'"
            )
        if "test" in self.counts:
            lines.append(f"score the test split once, at the end: {self.test_command()}")
        return "\n".join(lines + self.notes)

    def test_command(self) -> str:
        """The ``visionkit eval`` command that scores the test split (on data.val's folder,
        data.test takes its settings with ``split: test``)."""
        command = "visionkit eval --checkpoint runs/NAME/checkpoints/best.ckpt --split test"
        if self.kind == "coco":
            return f"{command} data.test.annotations={self.files['test']} data.test.images=IMAGES"
        if self.kind == "csv":
            images = self.folders.replace(", images: ", " data.test.images=")
            return f"{command} data.test.csv={self.files['test']}{images}"
        return f"{command} data.test.root={self.root}"

    @property
    def root(self) -> Path:
        """What a config names as the dataset's ``root``: the VOC or mask folder (above
        ``ImageSets/Main/`` or ``splits/``), YOLO's ``data.yaml``; COCO has none (its split
        files' folder)."""
        if self.kind == "voc":
            return self.files["train"].parents[2]
        if self.kind in ("masks", "classes", "labelme"):
            return self.files["train"].parents[1]
        return self.files.get("yaml", self.files["train"].parent)


def split_dataset(
    source: str | os.PathLike,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
    annotations: str | None = None,
    images: str | None = None,
    masks: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> SplitReport:
    """Split a VOC folder, a YOLO folder, a mask folder, a LabelMe folder, a folder of class
    folders, a CSV of (image, label) rows or a COCO json at random (see the module docstring).

    Args:
        source: the VOC, YOLO, mask or LabelMe folder, the folder of class folders, the
            ``.csv`` file, or the COCO ``.json`` file.
        val, test: the fractions of the images for val and test; train takes the rest.
        seed: the shuffle's seed.
        overwrite: replace split files that exist (default: refuse, naming them).
        annotations, images: a VOC folder's two sub-folders, when they have other names;
            ``images``: a CSV's image folder (default its own).
        masks: a mask folder's label sub-folder, when not ``masks/`` (with ``images``, when
            not ``images/``); naming it splits ``source`` as a mask folder.
        image_column, label_column: a CSV's image and label columns (a header name or a
            0-based index), when its header does not name them.

    Raises:
        DataError: ``source`` is neither, or holds nothing to split.
        ConfigError: bad fractions.
        DataError: split files exist and ``overwrite`` is not given.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".json":
        return _split_coco(path, val, test, seed, overwrite)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        from visionkit.data.split_csv import split_csv

        return split_csv(path, val, test, seed, overwrite, images, image_column, label_column)
    if image_column is not None or label_column is not None:
        raise DataError(
            f"--image-column / --label-column: only for a CSV of (image, label) rows; {path} is "
            "not a .csv or .tsv file"
        )
    from visionkit.data.split_masks import is_mask_folder, split_masks

    if path.is_dir() and (masks is not None or is_mask_folder(path, images)):
        return split_masks(path, val, test, seed, overwrite, images, masks)
    from visionkit.data.split_labelme import is_labelme_folder, split_labelme

    if path.is_dir() and is_labelme_folder(path):
        return split_labelme(path, val, test, seed, overwrite)
    from visionkit.data.convert.darknet import darknet_file

    yolo = (path / "labels").is_dir() and (path / "images").is_dir()
    if path.is_dir() and (yolo or darknet_file(path)):
        return _split_yolo(path, val, test, seed, overwrite)
    if path.is_dir() and (
        annotations
        or any((path / d).is_dir() for d in ANNOTATION_DIRS)
        or any(p.suffix.lower() == ".xml" for p in path.iterdir())  # beside images (labelImg)
    ):
        return _split_voc(path, val, test, seed, overwrite, annotations, images)
    from visionkit.data.split_classes import is_class_folders, split_classes

    if path.is_dir() and is_class_folders(path):
        return split_classes(path, val, test, seed, overwrite)
    if not path.exists():
        holds = " (it does not exist)"
    elif path.is_dir():
        folders = sorted(f"{p.name}/" for p in path.iterdir() if p.is_dir())
        holds = f"; it holds {', '.join(folders[:8]) or 'no folders'}"
        ready = [f for f in ("train/", "val/", "valid/", "test/") if f in folders]
        yaml_file = next(
            (path / n for n in ("data.yaml", "data.yml") if (path / n).is_file()), None
        )
        if yaml_file is not None and ready:  # a YOLO export (Roboflow's train/ valid/ test/)
            holds += (
                f" (split already, with {yaml_file.name}: read it as format: yolo, root: "
                f"{yaml_file}, split: train / val)"
            )
        elif len(ready) > 1:
            holds += (
                f" (split already: name the folders in each split's entry, e.g. for CamVid "
                f"data.train='{{format: mask_folder, root: {path}, images: train, masks: "
                "trainannot}' as configs/custom/semseg_r18.yaml does)"
            )
    else:
        holds = " (a file, not a .json or .csv)"
    raise DataError(
        f"{path}: expected a VOC folder (Annotations/ + JPEGImages/ or annotations/ + images/, "
        "or XML files beside their images), "
        "a YOLO folder (images/ + labels/), a mask folder (images/ + masks/), a LabelMe folder "
        "(a json file per image), a folder of class folders (<class>/<image>), a .csv of "
        f"(image, label) rows or a COCO .json file{holds}"
    )


def refuse_existing(every: dict[str, Path], overwrite: bool) -> None:
    """Refuse when any split file (of every split, written now or not) exists, unless
    ``overwrite``."""
    existing = [str(p) for p in every.values() if p.exists()]
    if existing and not overwrite:
        raise DataError(
            f"split files exist: {', '.join(existing)}; they are kept (give --overwrite to "
            "replace them)"
        )


def _remove_stale(every: dict[str, Path], written: dict[str, Path]) -> None:
    """With ``--overwrite``, a split file this split does not write (a test list of an earlier
    split with --test) is removed: it would hold images of the new train or val split."""
    for name, path in every.items():
        if name not in written and path.exists():
            path.unlink()


def write_lists(every: dict[str, Path], parts: dict[str, list[str]]) -> dict[str, Path]:
    """Each non-empty split's ids, one per line, into its file of ``every`` (atomically);
    returns the files written (a stale one of an empty split is removed)."""
    files = {s: every[s] for s in SPLITS if parts[s]}
    for name, target in files.items():
        text = "\n".join(parts[name]) + "\n"
        write_atomic(target, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    _remove_stale(every, files)
    return files


def _split_voc(
    root: Path,
    val: float,
    test: float,
    seed: int,
    overwrite: bool,
    annotations: str | None,
    images: str | None,
) -> SplitReport:
    from visionkit.data.convert.voc import voc_folders, xml_files

    xml_dir, _ = voc_folders(root, annotations, images)
    ids = list(xml_files(xml_dir))  # sorted
    if not ids:
        raise DataError(f"{xml_dir} holds no .xml files to split")
    parts = assign(ids, val, test, seed)
    every = {s: root / "ImageSets" / "Main" / f"{s}.txt" for s in SPLITS}
    refuse_existing(every, overwrite)
    files = write_lists(every, parts)
    return SplitReport("voc", files, {s: len(parts[s]) for s in files})


def _split_yolo(root: Path, val: float, test: float, seed: int, overwrite: bool) -> SplitReport:
    import yaml

    from visionkit.data.batch import list_files
    from visionkit.data.convert.darknet import darknet_class_names, darknet_file, darknet_split
    from visionkit.data.convert.yolo import pose_keys, yolo_class_names

    if darknet_file(root):  # CVAT's YOLO 1.1 export: every image its lists name
        names, found = darknet_class_names(root), darknet_split(root, None)[0]
    else:
        names, found = yolo_class_names(root), list_files(root / "images")
    base = Path(os.path.abspath(root))  # as written: symlinked folders inside are inside
    outside = [str(p) for p in found if not Path(os.path.abspath(p)).is_relative_to(base)]
    if outside:  # a list naming images elsewhere (absolute paths of another machine)
        raise DataError(
            f"{root}: images listed outside the dataset folder, which a split list names "
            "relative to it; list them relative to the folder (data/obj_train_data/a.jpg)",
            outside,
        )
    ids = [f"./{Path(os.path.abspath(p)).relative_to(base).as_posix()}" for p in found]
    if not ids:
        raise DataError(f"{root / 'images'} holds no images to split")
    parts = assign(ids, val, test, seed)
    every = {s: root / f"autosplit_{s}.txt" for s in SPLITS}
    refuse_existing({**every, "yaml": root / "autosplit.yaml"}, overwrite)
    files = write_lists(every, parts)
    described = {**files, "yaml": root / "autosplit.yaml"}
    spec = {"path": ".", **{s: f.name for s, f in files.items()}}
    spec["names"] = dict(enumerate(names))
    spec.update(pose_keys(root))  # a pose dataset's keypoint definition goes along
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    write_atomic(described["yaml"], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return SplitReport("yolo", described, {s: len(parts[s]) for s in files})


def _split_coco(path: Path, val: float, test: float, seed: int, overwrite: bool) -> SplitReport:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        images = coco["images"]
        ids = [str(image["id"]) for image in images]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a COCO json with images[].id ({err})") from err
    if not ids:
        raise DataError(f"{path}: images is empty: nothing to split")
    if len(set(ids)) != len(ids):
        files: dict[str, list[str]] = {}
        for image_id, image in zip(ids, images, strict=True):
            files.setdefault(image_id, []).append(repr(image.get("file_name")))
        raise DataError(
            f"{path}: images[].id repeats an id; ids must be unique to split:",
            [f"image id {i}: {', '.join(f)}" for i, f in files.items() if len(f) > 1],
        )
    parts = assign(ids, val, test, seed)
    every = {s: path.with_name(f"{path.stem}_{s}.json") for s in SPLITS}
    refuse_existing(every, overwrite)
    files = {s: every[s] for s in SPLITS if parts[s]}
    annotations = coco.get("annotations") or []
    for name, target in files.items():
        chosen = set(parts[name])
        subset: dict[str, Any] = {
            **coco,
            "images": [im for im in images if str(im["id"]) in chosen],
            "annotations": [a for a in annotations if str(a.get("image_id")) in chosen],
        }
        text = json.dumps(subset)
        write_atomic(target, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    _remove_stale(every, files)
    return SplitReport("coco", files, {s: len(parts[s]) for s in files})
