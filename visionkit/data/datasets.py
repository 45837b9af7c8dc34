"""Datasets built from readers: several read as one (:class:`MixedDataset`), samples run
through a pipeline (:class:`TransformedDataset`), the label families of the splits (their
class lists compared and merged in :mod:`visionkit.data.classes`), and a warning when the
validation entry reads the training images (:func:`shared_images_note`).

None of this needs Lightning: the engine's data module, ``check-data``, the pictures and the
benchmarks use it alike.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.data import annotated_classes
from visionkit.data.classes import class_source, merge_classes, relabel
from visionkit.data.mixing import mix, mosaic_extras
from visionkit.data.read_resize import resize_sample
from visionkit.data.sample_cache import SampleCache
from visionkit.data.transforms import apply_pipeline
from visionkit.errors import DataError, SampleError, VisionkitError


class MixedDataset(Dataset):
    """Several named datasets read as one, for training on mixed data.

    Each part keeps its own labels: an image from a classification folder carries ``class``
    only, one from a COCO file ``boxes`` only, and each head learns from the images that carry
    its labels. The parts' class lists are merged by name (:func:`merge_classes`): a class
    that only some parts have is added, and each part's labels are moved to the merged order
    as its samples are read; parts that give one class two COCO category ids, or one id two
    names, are refused (:class:`~visionkit.errors.DataError`). Where the parts' box classes
    differ, each sample of a part with boxes carries the classes its part annotates
    (``annotated_classes``, bool ``[C]``; ``annotated``: part name → that vector), so that the
    detection heads do not learn the others as background (:mod:`visionkit.data.
    annotated_classes`).

    Args:
        parts: name → dataset.
        weights: name → sampling weight; an epoch draws ``len(self)`` samples with part ``d``
            drawn in proportion to ``weights[d]`` (see :meth:`sample_weights`).
        annotated: name → the box classes that part annotates (its entry's
            ``annotated_classes``, class names), overriding its own class list.
        boxes: whether a head learns from boxes; without one no sample carries
            ``annotated_classes`` (:attr:`box_classes` is still computed).
        where: the config path of the mix, for messages (``data.train``).

    Raises:
        DataError: the parts' classes conflict, or an ``annotated`` list names a class of no
            part (:func:`~visionkit.data.annotated_classes.annotated_labels`).
    """

    def __init__(
        self,
        parts: Mapping[str, Any],
        weights: Mapping[str, float],
        annotated: Mapping[str, Sequence[str] | None] | None = None,
        boxes: bool = True,
        where: str = "data.train",
    ) -> None:
        self.parts = dict(parts)
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.parts}
        self.offsets: list[int] = []
        total = 0
        for dataset in self.parts.values():
            self.offsets.append(total)
            total += len(dataset)
        self.total = total
        self.label_names, self.category_ids, self.mappings = merge_classes(self.parts)
        merged = self.label_names.get("instances", [])
        labels = annotated_classes.annotated_labels(
            self.parts, merged, self.mappings, annotated or {}, where
        )
        vectors = annotated_classes.annotated_by_part(labels, len(merged))
        #: part giving boxes → bool [C]: the classes it annotates
        self.box_classes = {n: vectors.get(n, np.ones(len(merged), bool)) for n in labels}
        #: the same where they differ and a head learns from boxes (what the samples carry)
        self.annotated = vectors if boxes else {}
        self.boxes = boxes
        self.class_source = "; ".join(
            f"{name}: {class_source(dataset)}" for name, dataset in self.parts.items()
        )

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.total <= index < self.total:  # as a list: a for loop stops here
            raise IndexError(f"sample {index} of a dataset of {self.total}")
        name, local = self.part_of(index % self.total)
        sample = relabel(self.parts[name][local], self.mappings.get(name, {}))
        if name in self.annotated:
            sample[annotated_classes.ANNOTATED] = self.annotated[name].copy()
        return sample

    def partners_of(self, index: int) -> range:
        """The samples a multi-image step (``Mosaic``, ``MixUp``) may mix sample ``index``
        with: those of its own part where the parts annotate different box classes (a mosaic
        of a ``pets`` photo and a ``roads`` one would annotate no class, and teach no
        negatives), else every sample."""
        if not self.annotated:
            return range(self.total)
        name, local = self.part_of(int(index) % self.total)
        start = int(index) % self.total - local
        return range(start, start + len(self.parts[name]))

    def part_of(self, index: int) -> tuple[str, int]:
        """The name of the part that holds sample ``index``, and the sample's index in it."""
        for offset, name in zip(reversed(self.offsets), reversed(self.parts), strict=True):
            if index >= offset:
                return name, index - offset
        raise IndexError(index)

    def path_of(self, index: int) -> str:
        """The image file of sample ``index`` (from the part that holds it)."""
        name, local = self.part_of(index)
        return self.parts[name].path_of(local)

    def sample_weights(self) -> list[float]:
        """Per-sample probabilities: part ``d``'s weight spread over its samples."""
        out: list[float] = []
        for name, dataset in self.parts.items():
            out += [self.weights[name] / max(1, len(dataset))] * len(dataset)
        return out


def merge_label_names(parts: Mapping[str, Any]) -> dict[str, list[str]]:
    """The union of the parts' label families; a family carried by several parts must have
    the same class list in each (else :class:`DataError` naming both)."""
    merged: dict[str, list[str]] = {}
    source: dict[str, str] = {}
    problems = []
    for name, dataset in parts.items():
        for family, names in getattr(dataset, "label_names", {}).items():
            if family not in merged:
                merged[family], source[family] = list(names), name
            elif list(names) != merged[family]:
                problems.append(
                    f"{family!r} classes differ: {source[family]} has {merged[family]}, "
                    f"{name} has {list(names)}"
                )
    if problems:
        raise DataError("the mixed datasets disagree on their classes:", problems)
    return merged


def label_names_of(datasets: Mapping[str, Any]) -> dict[str, list[str]]:
    """The label names of the training set (else of the validation sets, merged)."""
    if datasets.get("train") is not None:
        return {k: list(v) for k, v in getattr(datasets["train"], "label_names", {}).items()}
    return merge_label_names(val_sets(datasets.get("val")))


def class_colours_of(dataset: Any) -> dict[str, list[list[int]]]:
    """The colours a dataset publishes for its classes, per label family (a mask folder read
    through a palette, or whose label PNGs are palette images, as Pascal VOC's:
    ``{"semantic": [[R, G, B], ...]}``; a mix: its parts', the first part of a family
    deciding); ``{}`` when it has none."""
    parts = getattr(dataset, "parts", None)
    if isinstance(parts, Mapping):
        found: dict[str, list[list[int]]] = {}
        for part in parts.values():
            for family, colours in class_colours_of(part).items():
                found.setdefault(family, colours)
        return found
    palette = getattr(dataset, "palette", None)
    if palette is not None and hasattr(palette, "class_colours"):
        return {"semantic": palette.class_colours()}
    colours = label_png_colours(dataset)
    return {"semantic": colours} if colours else {}


def label_png_colours(dataset: Any) -> list[list[int]] | None:
    """The class colours of a mask folder whose label PNGs are palette images (index = class,
    the palette giving each its colour: VOC's, CVAT's exports), read from its first label
    file (class ``k`` at index ``k + 1`` where the files number the classes from 1,
    ``reduce_zero_label``); ``None`` for other labels, or a palette that is only the grey ramp
    of the indices (no colours chosen by anyone)."""
    from PIL import Image

    names = (getattr(dataset, "label_names", None) or {}).get("semantic")
    first = next((p for p in getattr(dataset, "mask_paths", ()) if p is not None), None)
    if not names or first is None:
        return None
    try:
        with Image.open(first) as label:
            flat = label.getpalette() if label.mode == "P" else None
    except OSError:
        return None
    lowest = int(bool(getattr(dataset, "reduce_zero_label", False)))  # class 0's index
    if not flat or len(flat) < 3 * (len(names) + lowest):
        return None
    colours = [flat[3 * k : 3 * k + 3] for k in range(lowest, len(names) + lowest)]
    return None if all(c == [k, k, k] for k, c in enumerate(colours, lowest)) else colours


def gives(dataset: Any, target: str) -> bool:
    """Whether a built dataset (a mix: one of its parts) gives its samples ``target``
    (``"masks"``, ``"keypoints"``, ...): one of its reader's ``targets``, switched on where the
    reader has a flag for it (``target_flags``: e.g. ``masks`` left off, or ``"auto"`` with no
    segmentation in the file), and given by some image where the reader says which
    (``gives_target``: a COCO file whose every image holds a box without a segmentation gives
    no masks). A reader that declares no ``targets`` is assumed to."""
    parts = getattr(dataset, "parts", None)
    if isinstance(parts, Mapping):
        return any(gives(part, target) for part in parts.values())
    reader = type(dataset)
    if target not in getattr(reader, "targets", (target,)):
        return False
    flag = getattr(reader, "target_flags", {}).get(target)
    if flag is not None and not getattr(dataset, flag, True):
        return False
    given = getattr(dataset, "gives_target", None)
    return given is None or given(target)


def carries_labels(dataset: Any, family: str) -> bool:
    """Whether ``dataset`` carries the label family ``family`` (``"class"``, ``"instances"``,
    ``"semantic"``; readers without ``label_names`` are assumed to)."""
    names = getattr(dataset, "label_names", None)
    return names is None or family in names


def val_sets(val: Any) -> dict[str, Any]:
    """The validation split as a name → dataset dict (``{"val": dataset}`` for one)."""
    if val is None:
        return {}
    return dict(val) if isinstance(val, dict) else {"val": val}


def first_images(val: Any, n: int) -> list[tuple[str, Any, int]]:
    """``(set name, dataset, index)`` of the first ``n`` images of a validation split, shared
    out over its non-empty sets (the first ``ceil(n / sets)`` of each, in order)."""
    sets = {name: ds for name, ds in val_sets(val).items() if len(ds)}
    per_set = -(-n // len(sets)) if sets else 0
    items = [(name, ds, i) for name, ds in sets.items() for i in range(min(per_set, len(ds)))]
    return items[:n]


def set_label(name: str, sets: Mapping[str, Any]) -> str:
    """``"<name>: "``, the prefix of a picture's caption naming its set among several sets;
    ``""`` when there is one."""
    return f"{name}: " if len(sets) > 1 else ""


class TransformedDataset(Dataset):
    """A dataset's Samples run through an albumentations pipeline.

    A failure while reading or transforming sample ``i`` is re-raised as a
    :class:`~visionkit.errors.SampleError` naming the index, the image id and the file (it
    reaches the main process from a loader worker without the worker's traceback). The
    ``"skipped"`` records of a reader under ``on_bad_image: skip`` travel with the sample.
    The Sample keys in ``drop`` (e.g. ``boxes``, ``labels``, ``masks`` for a model without a
    box head) are left out before the pipeline. A pipeline's first resize to a fixed size is
    done once more as a Sample is read (:mod:`visionkit.data.read_resize`). With a ``cache``
    (``data.cache: ram``), each Sample is read (and so resized) once per process and copies of
    it are transformed after that.

    With ``reseed`` (training), the pipeline's random stream is re-seeded before every sample:
    from the index's ``seed_keys`` when it has them (the training sampler's
    :class:`~visionkit.engine.sampling.SampleKey`: run seed, epoch and draw, so augmentations
    depend on neither loader workers nor random state, and a resumed run draws those of an
    uninterrupted one), else from torch's generator and ``rank``. (albumentations alone seeds
    itself from OS entropy.) Multi-image steps (:mod:`visionkit.data.mixing`) draw from it too.
    """

    def __init__(
        self,
        dataset: Any,
        pipeline: Any,
        reseed: bool = False,
        rank: int = 0,
        drop: Sequence[str] = (),
        cache: SampleCache | None = None,
    ) -> None:
        self.dataset = dataset
        self.pipeline = pipeline
        self.reseed = reseed
        self.rank = rank
        self.drop = tuple(drop)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.read(index)
        if self.reseed:  # (seed, epoch, draw) from the training sampler, else torch's stream
            keys = getattr(index, "seed_keys", None) or (int(torch.randint(2**62, ())), self.rank)
            seed_pipeline(self.pipeline, *keys)
        mixing = getattr(index, "mixing", True)  # False: data.close_mixing's last steps
        out = self.transform(index, sample, mosaic=mixing)
        where = f"sample {index} (image id {sample.get('image_id')}, {sample.get('path')})"
        for step in getattr(self.pipeline, "mixing", ()) if mixing else ():  # MixUp, CopyPaste
            out = mix(step, self, out, where, index)
        return out

    def read(self, index: int) -> dict[str, Any]:
        """Sample ``index`` from the dataset, less the keys in ``drop``, through the pipeline's
        ``resize_on_read`` when it has one (a copy of the one read before, with a ``cache``)."""
        return self.cache.get(index, self._read) if self.cache is not None else self._read(index)

    def _read(self, index: int) -> dict[str, Any]:
        try:
            sample = self.dataset[index]
        except Exception as err:
            if isinstance(err, IndexError) and not -len(self.dataset) <= index < len(self):
                raise  # past the end, as a list: a for loop stops
            path = _path_of(self.dataset, index)
            where = f"sample {index}" + (f" ({path})" if path and path not in str(err) else "")
            what = "" if isinstance(err, VisionkitError) else f"{type(err).__name__}: "
            raise SampleError(f"{where}: reading failed: {what}{err}") from err
        if self.drop:
            sample = {key: value for key, value in sample.items() if key not in self.drop}
        resize = getattr(self.pipeline, "resize_on_read", None)
        if resize is None:
            return sample
        try:  # the pipeline's first resize, once, before the cache (data/read_resize.py)
            return resize_sample(resize, sample)
        except Exception as err:
            raise _transform_failed(index, sample, err) from err

    def transform(self, index: int, sample: dict[str, Any], mosaic: bool = True) -> dict[str, Any]:
        """``sample`` (read at ``index``) through the pipeline, after its ``Mosaic`` when one
        is drawn (never with ``mosaic=False``)."""
        extras = mosaic_extras(self, index) if mosaic else []
        try:
            raw = self.pipeline.mosaic(sample, extras) if extras else sample
            out = apply_pipeline(self.pipeline, raw)
        except Exception as err:
            raise _transform_failed(index, sample, err) from err
        if raw.get("skipped"):
            out["skipped"] = raw["skipped"]
        return out


def _transform_failed(index: int, sample: dict[str, Any], err: Exception) -> SampleError:
    """The error of sample ``index`` whose transform (the read resize, or the pipeline) raised
    ``err``: which sample, its image id and file, and what failed."""
    return SampleError(
        f"sample {index} (image id {sample.get('image_id')}, {sample.get('path')}): "
        f"transform failed: {type(err).__name__}: {err}"
    )


def _path_of(dataset: Any, index: int) -> str | None:
    """The image file of sample ``index``, when the reader can say (``path_of``)."""
    try:
        return str(dataset.path_of(index))
    except Exception:  # a reader without path_of, or an index it cannot resolve
        return None


def seed_pipeline(pipeline: Any, *keys: int) -> None:
    """Give every transform of an albumentations pipeline one shared generator seeded from
    ``keys`` (e.g. base seed, rank, worker). ``Compose.set_random_seed`` would give each
    transform its own generator with the *same* seed, so that two flips with ``p=0.5``
    always agree."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint64)
    pipeline.set_random_state(np.random.default_rng(int(state[0])), random.Random(int(state[1])))


#: Entry keys that choose which images a dataset entry reads (besides its location).
SELECTING_KEYS = ("format", "split", "images", "annotations", "masks")


def shared_images_note(data: Any, datasets: Mapping[str, Any] | None = None) -> str | None:
    """A warning for a ``data`` section whose ``val`` reads the very images of ``train``
    (the same dataset entry: same format, folder or file, and split), or, given the built
    ``datasets``, whose validation sets hold image files of the training set (a VOC
    ``val.txt`` listing training ids, two COCO files of the same images): its scores would
    be those of the training photos; ``None`` otherwise (synthetic data is left alone)."""
    from visionkit.config import split_entries
    from visionkit.registry import DATASETS

    def images_of(entry: Any) -> tuple[Any, ...] | None:
        if not isinstance(entry, dict) or entry.get("synthetic") or "format" not in entry:
            return None
        location = DATASETS.component_class(entry["format"]).location
        if not isinstance(entry.get(location), str):  # unset: build_datasets says so
            return None
        files = {location, "annotations"}  # paths, compared as the files they name

        def value(key: str) -> Any:
            given = entry.get(key)
            return str(Path(given).resolve()) if key in files and isinstance(given, str) else given

        return (value(location), *(value(k) for k in SELECTING_KEYS))

    trained = {images_of(e): w for w, e in split_entries(data.train, "data.train")}
    unsplit = {  # training entries that read a whole folder: (format, folder) → where
        (same[1], same[0]): where
        for same, where in trained.items()
        if same is not None and same[2] is None
    }
    fixes = {}
    for where, entry in split_entries(data.val, "data.val"):
        same = images_of(entry)
        if same is not None and same in trained:
            return (
                f"{where} reads the same images as {trained[same]} ({entry.get('format')} "
                f"{same[0]}): validation would score the photos the model trains on; "
                f"{held_out_hint(DATASETS.component_class(entry['format']))}"
            )
        if same is not None and same[2] is not None and (same[1], same[0]) in unsplit:
            train = unsplit[(same[1], same[0])]  # a split's images read whole for training
            fixes[where] = (
                f"{train} has no split: it reads every image of {same[0]}, those of {where} "
                f"(split: {same[2]}) too; set {train}.split=train"
            )
    return _shared_files_note(datasets, fixes) if datasets else None


def _shared_files_note(datasets: Mapping[str, Any], fixes: Mapping[str, str]) -> str | None:
    """:func:`shared_images_note` of the built datasets: the validation images whose file
    is also a training image's (paths compared made absolute, not resolved); the fix said is
    that of ``fixes`` (config path → what to change) for the validation set's entry."""
    train = datasets.get("train")
    if train is None:
        return None
    trained = {_absolute(train, i) for i in range(len(train))} - {None}
    for name, val in val_sets(datasets.get("val")).items():
        shared = [p for p in (_absolute(val, i) for i in range(len(val))) if p in trained]
        if shared:
            where = "data.val" if name == "val" else f"data.val.{name}"
            fix = fixes.get(where, held_out_hint(val))
            return (
                f"{where}: {len(shared)} of its {len(val)} images "
                f"{'is a training image' if len(shared) == 1 else 'are training images'} too "
                f"(e.g. {shared[0]}): validation would score photos the model trains on; {fix}"
            )
    return None


def held_out_hint(reader: Any) -> str:
    """What to validate on instead of the training images, for a dataset (or reader class):
    held-out photos of the same classes, or, for folders of identities (``classes_learned``
    false), folders of other identities: ``visionkit split`` splits the images of each class
    folder, which is no verification of new people (nor can that reader read its lists)."""
    if not getattr(reader, "classes_learned", True):
        return (
            "give a folder of other identities, never seen in training (move some identity "
            "folders out of the training folder)"
        )
    return "give held-out photos, or split the dataset (visionkit split)"


def _absolute(dataset: Any, index: int) -> str | None:
    path = _path_of(dataset, index)
    return os.path.normpath(os.path.abspath(path)) if path else None


#: How many times more images the largest class may hold than the smallest before training
#: warns (:func:`imbalance_note`).
IMBALANCE_RATIO = 10


def imbalance_note(dataset: Any, weighted: bool = False) -> str | None:
    """A warning for a training set of image-level classes (an ImageFolder, a COCO
    ``class_field``) whose largest class holds :data:`IMBALANCE_RATIO` times the images of its
    smallest, with each class's count; ``None`` otherwise (no report of its classes). It
    points to ``class_weights: auto`` unless the classes are ``weighted`` already (a
    classification head's ``class_weights`` set)."""
    counts = getattr(getattr(dataset, "report", None), "class_counts", {}).get("class")
    held = sorted(((n, name) for name, n in (counts or {}).items() if n), key=lambda c: -c[0])
    if len(held) < 2 or held[0][0] < IMBALANCE_RATIO * held[-1][0]:
        return None
    (most, big), (least, small) = held[0], held[-1]
    shown = ", ".join(f"{name} {n}" for n, name in held[:10])
    more = f", ... ({len(held) - 10} more)" if len(held) > 10 else ""
    return (
        f"data.train: imbalanced classes: {big} has {most} images, {small} {least} "
        f"({most / least:.0f}x fewer); images per class: {shown}{more}; the model sees the "
        "small classes rarely: the per-class table of validation and eval shows each one's "
        "recall"
        + (
            ""
            if weighted
            else "; a classification head's class_weights: auto weighs each class by its images"
        )
    )
