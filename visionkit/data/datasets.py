"""Datasets built from readers: several read as one (:class:`MixedDataset`), samples run
through a pipeline (:class:`TransformedDataset`), and the label families of the splits.

None of this needs Lightning: the engine's data module, ``check-data``, the pictures and the
benchmarks use it alike.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.data.transforms import apply_pipeline
from visionkit.errors import DataError, SampleError, VisionkitError


class MixedDataset(Dataset):
    """Several named datasets read as one, for training on mixed data.

    Each part keeps its own labels: an image from a classification folder carries ``class``
    only, one from a COCO file ``boxes`` only, and each head learns from the images that carry
    its labels. Label families that several parts carry must name the same classes.

    Args:
        parts: name → dataset.
        weights: name → sampling weight; an epoch draws ``len(self)`` samples with part ``d``
            drawn in proportion to ``weights[d]`` (see :meth:`sample_weights`).
    """

    def __init__(self, parts: Mapping[str, Any], weights: Mapping[str, float]) -> None:
        self.parts = dict(parts)
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.parts}
        self.offsets: list[int] = []
        total = 0
        for dataset in self.parts.values():
            self.offsets.append(total)
            total += len(dataset)
        self.total = total
        self.label_names = merge_label_names(self.parts)
        with_ids = [d for d in self.parts.values() if getattr(d, "category_ids", None)]
        self.category_ids = list(with_ids[0].category_ids) if with_ids else []

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: int) -> dict[str, Any]:
        for offset, dataset in zip(
            reversed(self.offsets), reversed(self.parts.values()), strict=True
        ):
            if index >= offset:
                return dataset[index - offset]
        raise IndexError(index)

    def path_of(self, index: int) -> str:
        """The image file of sample ``index`` (from the part that holds it)."""
        for offset, dataset in zip(
            reversed(self.offsets), reversed(self.parts.values()), strict=True
        ):
            if index >= offset:
                return dataset.path_of(index - offset)
        raise IndexError(index)

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


class TransformedDataset(Dataset):
    """A dataset's Samples run through an albumentations pipeline.

    A failure while reading or transforming sample ``i`` is re-raised as a
    :class:`~visionkit.errors.SampleError` naming the index, the image id and the file (it
    reaches the main process from a loader worker without the worker's traceback). The
    ``"skipped"`` records of a reader under ``on_bad_image: skip`` travel with the sample.
    The Sample keys in ``drop`` (e.g. ``boxes``, ``labels``, ``masks`` for a model without a
    box head) are left out before the pipeline.

    With ``reseed`` (training), the pipeline's random stream is re-seeded before every sample
    from torch's generator and ``rank``: torch's generator is seeded by the run's ``seed`` (per
    loader worker by Lightning) and saved in checkpoints, so augmentations are reproducible,
    differ between ranks, and a resumed run continues with those of an uninterrupted one.
    (albumentations alone seeds itself from OS entropy.)
    """

    def __init__(
        self,
        dataset: Any,
        pipeline: Any,
        reseed: bool = False,
        rank: int = 0,
        drop: Sequence[str] = (),
    ) -> None:
        self.dataset = dataset
        self.pipeline = pipeline
        self.reseed = reseed
        self.rank = rank
        self.drop = tuple(drop)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            sample = self.dataset[index]
        except Exception as err:
            path = _path_of(self.dataset, index)
            where = f"sample {index}" + (f" ({path})" if path and path not in str(err) else "")
            what = "" if isinstance(err, VisionkitError) else f"{type(err).__name__}: "
            raise SampleError(f"{where}: reading failed: {what}{err}") from err
        if self.drop:
            sample = {key: value for key, value in sample.items() if key not in self.drop}
        if self.reseed:
            seed_pipeline(self.pipeline, int(torch.randint(2**62, ())), self.rank)
        try:
            out = apply_pipeline(self.pipeline, sample)
        except Exception as err:
            raise SampleError(
                f"sample {index} (image id {sample.get('image_id')}, {sample.get('path')}): "
                f"transform failed: {type(err).__name__}: {err}"
            ) from err
        if sample.get("skipped"):
            out["skipped"] = sample["skipped"]
        return out


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
