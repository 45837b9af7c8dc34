"""An ImageFolder of identities: ``root/<identity>/<image>``, for the ``embedding`` head.

The layout is the ``folder`` reader's (faces, people, objects: one sub-folder per identity),
but the labels form their own family, ``identity``: they fill an embedding head's number of
training identities, and a validation set's identities are not compared with the training
set's. A verification set holds people never seen in training, so its folders are its own.

``pairs`` names an LFW-style pairs file whose rows say which images to compare::

    10  300                      optional header (folds, pairs per fold): skipped
    Abel_Pacheco  1  4           same identity: <name> <image n> <image m>
    Abdel_Madi_Shabneh  1  Dean_Barker  1     different: <name> <n> <other name> <m>

Image ``n`` of ``name`` is the file ``name/name_000n.<ext>`` when there is one (LFW's naming),
else the ``n``-th image of ``name/`` in sorted order.

>>> ds = IdentityFolderDataset("path/to/faces")  # doctest: +SKIP
>>> ds.label_names["identity"][:2]  # sorted sub-folder names  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import ClassVar, Literal

from visionkit.data.batch import IMAGE_EXTENSIONS, Sample
from visionkit.data.readers.folder import ImageFolderDataset
from visionkit.errors import DataError
from visionkit.registry import DATASETS

logger = logging.getLogger(__name__)


@DATASETS.register("identities")
class IdentityFolderDataset(ImageFolderDataset):
    """Images in one sub-folder per identity; each Sample's ``identity`` is its identity index.

    The key is ``identity``, not ``class``: mixed with a classification set
    (:class:`~visionkit.data.datasets.MixedDataset`), an identity is never read as an image
    class, nor an image class as an identity.

    Args:
        root: the folder holding one sub-folder per identity.
        pairs: an LFW-style pairs file (module docstring): the verification pairs its
            evaluation scores instead of every pair of images.
        extensions: file suffixes counted as images (case-insensitive).
        on_bad_image: ``"error"`` (default) or ``"skip"`` (as the ``folder`` reader).
        image_check: ``"header"`` (default) or ``"decode"``.

    Attributes:
        label_names: ``{"identity": [sorted sub-folder names]}``.
        pairs: ``[(image_id, image_id), ...]`` read from ``pairs``, or ``None``.
        unmatched_families: ``("identity",)``: the label families that are not checked
            against the training set's (:func:`visionkit.data.classes.match_classes`).
    """

    targets: ClassVar[tuple[str, ...]] = ("identity",)
    unmatched_families: ClassVar[tuple[str, ...]] = ("identity",)
    classes_learned: ClassVar[bool] = False

    def __init__(
        self,
        root: str | None = None,
        pairs: str | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        on_bad_image: Literal["error", "skip"] = "error",
        *,
        image_check: Literal["header", "decode"] = "header",
    ) -> None:
        super().__init__(root, None, extensions, on_bad_image=on_bad_image, image_check=image_check)
        names = self.label_names.pop("class")
        self.label_names = {"identity": names}
        self.report.class_counts["identity"] = self.report.class_counts.pop("class")
        self.report.format = "identities"
        self.pairs = read_pairs(pairs, self) if pairs else None
        self._check_identities()

    def _check_identities(self) -> None:
        """Warnings (reported and logged) for identity folders without images (a class of a
        training set that no image teaches) and, without a pairs file, for a set in which no
        identity has two images (no same-identity pair to score: its metrics are empty)."""
        counts = Counter(label for _, label in self.items)
        names = self.label_names["identity"]
        empty = [f"{name}/" for i, name in enumerate(names) if not counts[i]]
        found = []
        if empty:
            found.append(
                ("identity without images", ", ".join(empty[:10]), "a folder with no image in it")
            )
        if self.pairs is None and counts and max(counts.values()) < 2:
            found.append(
                (
                    "no same-identity pair",
                    str(self.root),
                    f"each of the {len(counts)} identities has one image: verification and "
                    "retrieval need two images of an identity (evaluated, every metric is empty)",
                )
            )
        for kind, where, detail in found:
            self.report.add(kind, where, detail, severity="warning")
            logger.warning("%s: %s: %s", kind, where, detail)

    def _load(self, index: int) -> Sample:
        sample = super()._load(index)
        sample["identity"] = sample.pop("class")
        return sample

    def identities(self) -> list[int]:
        """The identity index of every sample, in index order (read without decoding, for
        the identity batch sampler)."""
        return [label for _, label in self.items]


def read_pairs(path: str | Path, dataset: IdentityFolderDataset) -> list[tuple[int, int]]:
    """The ``(image_id, image_id)`` rows of an LFW-style pairs file over ``dataset``.

    Raises:
        DataError: the file is missing, or a row is malformed or names an identity or image
            the dataset does not have (all such rows listed by line number).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs: {path}: no such file (expected an LFW-style pairs file)")
    names = dataset.label_names["identity"]
    index_of = {name: i for i, name in enumerate(names)}
    by_identity: dict[int, list[int]] = {}
    for position, (_, label) in enumerate(dataset.items):
        by_identity.setdefault(label, []).append(position)

    def image_id(name: str, number: str) -> int:
        if name not in index_of:
            raise LookupError(f"no identity folder {name!r} under {dataset.root}")
        positions = by_identity.get(index_of[name], [])
        n = int(number)
        for position in positions:
            if Path(dataset.items[position][0]).stem == f"{name}_{n:04d}":
                return position + 1
        if not 1 <= n <= len(positions):
            raise LookupError(f"{name!r} has {len(positions)} images, no image {n}")
        return positions[n - 1] + 1

    rows, problems = [], []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (number == 1 and all(f.isdigit() for f in fields)):
            continue
        try:
            if len(fields) == 3:
                rows.append((image_id(fields[0], fields[1]), image_id(fields[0], fields[2])))
            elif len(fields) == 4:
                rows.append((image_id(fields[0], fields[1]), image_id(fields[2], fields[3])))
            else:
                raise LookupError(
                    f"expected 'name n m' or 'name n other m', got {len(fields)} fields"
                )
        except (LookupError, ValueError) as err:
            problems.append(f"{path}:{number}: {err}")
    if problems:
        raise DataError(f"pairs: {path}: {len(problems)} rows cannot be read:", problems)
    return rows
