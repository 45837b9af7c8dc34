"""Datasets from the config, the transform pipelines, and the ``LightningDataModule``."""

from __future__ import annotations

import inspect
import json
import logging
import random
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from visionkit.config import DataConfig, is_dataset_mix
from visionkit.data.transforms import apply_pipeline, build_pipeline, collate, pipeline_steps
from visionkit.errors import ConfigError, DataError, SampleError, VisionkitError
from visionkit.registry import DATASETS

logger = logging.getLogger(__name__)


def build_dataset(
    spec: Mapping[str, Any],
    label_names: Mapping[str, Sequence[str]] | None = None,
    where: str = "data",
    needs: Sequence[str] = (),
):
    """Build one dataset from its validated config (``{format: coco, images: ..., ...}``).

    Every format names its folder in its first parameter (``images`` for COCO, ``root`` for
    the folder layouts). When the spec has ``synthetic:``, names no ``annotations`` file, and
    that folder holds no data yet, the shapes dataset is generated there first. ``label_names`` (from the training set) fix
    the class order of a validation set whose config does not set one. ``needs`` names the
    targets the model's heads learn from (``"masks"``, ``"semantic"``); a reader parameter of
    that name left ``None`` ("when needed") is switched on.
    """
    args = {k: v for k, v in spec.items() if k not in ("format", "synthetic", "weight")}
    builder = DATASETS.get(spec["format"])
    params = inspect.signature(builder).parameters
    location = next(iter(params))
    if args.get(location) is None:
        raise ConfigError(
            f"{where}.{location}: not set; give the dataset folder, e.g. {where}.{location}=PATH"
        )
    synthetic = spec.get("synthetic")
    if synthetic and args.get("annotations"):
        # The user named an annotation file: their data, never a place to generate shapes
        # (a shapes recipe pointed at converted VOC/YOLO data keeps its synthetic: block).
        synthetic = None
    if synthetic and _needs_generation(Path(args[location]), synthetic):
        from visionkit.data.synthetic import make_shapes

        logger.info("generating the shapes dataset in %s", args[location])
        make_shapes(args[location], **synthetic, progress=True)
    for target in needs:
        if target in params and args.get(target) is None:
            args[target] = True
    if where.startswith("data.val") and "keep_negatives" in params:
        if args.get("keep_negatives") is False:
            logger.info("%s.keep_negatives: ignored; validation sets keep every image", where)
        args["keep_negatives"] = True  # images without boxes count in evaluation
    if label_names and "class" in label_names and args.get("class_names") is None:
        wants_classes = "class_field" not in params or args.get("class_field") is not None
        if "class_names" in params and wants_classes:
            args["class_names"] = list(label_names["class"])
    if where.startswith("data.val") and args.get("on_bad_image") == "skip":
        # A validation image must be read exactly once: under skip, decode every image now
        # and leave the unreadable ones out, rather than substitute another image later
        # (which the evaluators would count twice).
        from visionkit.data.checks import set_image_check_mode

        previous = set_image_check_mode("decode")
        try:
            return builder(**args)
        finally:
            set_image_check_mode(previous)
    return builder(**args)


def _needs_generation(root: Path, params: Mapping[str, Any]) -> bool:
    """True when ``root`` holds no dataset yet, or a shapes dataset made with other parameters
    (a dataset that is not a generated one is never replaced)."""
    path = root / "annotations.json"
    if not path.is_file():
        return not any(root.glob("*.json"))
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError, AttributeError):
        return False
    from visionkit.data.synthetic import GENERATOR

    if info.get("generator") != GENERATOR:
        return False
    return any(info.get(key) != value for key, value in params.items())


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


def build_split(
    spec: Mapping[str, Any],
    label_names: Mapping[str, Sequence[str]] | None,
    where: str,
    needs: Sequence[str],
) -> Any:
    """One dataset, or a name → dataset dict for a mix."""
    if not is_dataset_mix(spec):
        return build_dataset(spec, label_names, where=where, needs=needs)
    return {
        name: build_dataset(entry, label_names, where=f"{where}.{name}", needs=needs)
        for name, entry in spec.items()
    }


def build_datasets(cfg: DataConfig, needs: Sequence[str] = ()) -> dict[str, Any]:
    """The configured splits. ``train`` is one dataset (a :class:`MixedDataset` when several
    are named); ``val`` is one dataset or a name → dataset dict, sharing the training set's
    class order. ``needs`` as in :func:`build_dataset`."""
    datasets: dict[str, Any] = {}
    if cfg.train is not None:
        train = build_split(cfg.train, None, "data.train", needs)
        if isinstance(train, dict):
            weights = {name: entry.get("weight", 1.0) for name, entry in cfg.train.items()}
            train = MixedDataset(train, weights)
        datasets["train"] = train
    if cfg.val is not None:
        names = getattr(datasets.get("train"), "label_names", None)
        datasets["val"] = build_split(cfg.val, names, "data.val", needs)
    return datasets


def label_names_of(datasets: Mapping[str, Any]) -> dict[str, list[str]]:
    """The label names of the training set (else of the validation sets, merged)."""
    if datasets.get("train") is not None:
        return {k: list(v) for k, v in getattr(datasets["train"], "label_names", {}).items()}
    return merge_label_names(val_sets(datasets.get("val")))


def carries_labels(dataset: Any, label_key: str) -> bool:
    """Whether ``dataset`` carries the label family ``label_key`` (readers without
    ``label_names`` are assumed to)."""
    names = getattr(dataset, "label_names", None)
    return names is None or label_key in names


def val_sets(val: Any) -> dict[str, Any]:
    """The validation split as a name → dataset dict (``{"val": dataset}`` for one)."""
    if val is None:
        return {}
    return dict(val) if isinstance(val, dict) else {"val": val}


def unpadded_sampler(dataset: Any, rank: int, world_size: int) -> UnrepeatedDistributedSampler:
    """Rank ``rank`` of ``world_size``'s share of a validation set: indices ``rank, rank +
    world_size, ...``, in order, no index on two ranks and none repeated (a plain
    ``DistributedSampler`` pads the last ranks with repeats, which evaluators would count twice).

    Raises:
        DataError: the set has fewer images than there are processes (a rank with no batch
            would skip the validation epoch that the others wait in).
    """
    if len(dataset) < world_size:
        raise DataError(
            f"the validation set has {len(dataset)} images, fewer than the {world_size} "
            "processes; evaluate on fewer devices (trainer.devices=...)"
        )
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False
    )


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


class SkipCountingLoader(DataLoader):
    """A ``DataLoader`` that takes the ``"skipped"`` records (images a reader replaced under
    ``on_bad_image: skip``) out of each batch, and logs their count and files when the epoch's
    iteration ends."""

    def __iter__(self):
        skipped: list[dict[str, Any]] = []
        try:
            for batch in super().__iter__():
                if isinstance(batch, dict):
                    skipped += batch.pop("skipped", None) or []
                yield batch
        finally:
            if skipped:
                files = sorted({str(r["path"]) for r in skipped})
                logger.warning(
                    "on_bad_image: skip: %d unreadable images were skipped this epoch "
                    "(%d files: %s%s)",
                    len(skipped),
                    len(files),
                    ", ".join(files[:10]),
                    ", ..." if len(files) > 10 else "",
                )


def seed_pipeline(pipeline: Any, *keys: int) -> None:
    """Give every transform of an albumentations pipeline one shared generator seeded from
    ``keys`` (e.g. base seed, rank, worker). ``Compose.set_random_seed`` would give each
    transform its own generator with the *same* seed, so that two flips with ``p=0.5``
    always agree."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint64)
    pipeline.set_random_state(np.random.default_rng(int(state[0])), random.Random(int(state[1])))


class VisionDataModule(L.LightningDataModule):
    """Owns the datasets and pipelines of one config.

    Under several processes (DDP), Lightning gives the training loader a
    ``DistributedSampler`` (shuffled with the run's seed, the same on every rank, so the ranks
    draw disjoint parts of one permutation; a mix's weighted sampler is wrapped the same way).
    Validation loaders get an :class:`~lightning.pytorch.overrides.distributed.
    UnrepeatedDistributedSampler` from here instead: rank ``r`` of ``W`` reads images ``r, r + W,
    ...`` with no padding, so every image is evaluated exactly once and the metrics equal those
    of one process (the ranks may run one batch more or less). The training augmentations are
    seeded per rank (and per loader worker) from the run's seed, so the ranks do not draw the
    same flips.

    Args:
        cfg: the ``data`` section.
        datasets: already built splits (see :func:`build_datasets`).
        mean, std: normalisation of the backbone (its pretrained config).
        boxes: whether the model learns from boxes (:func:`visionkit.models.factory.boxes_needed`);
            when not, the readers' boxes, their labels and instance masks are left out of
            the samples before the pipeline (a classifier's loader then runs several times
            faster).
    """

    def __init__(
        self,
        cfg: DataConfig,
        datasets: Mapping[str, Any],
        mean: Sequence[float],
        std: Sequence[float],
        boxes: bool = True,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.datasets = dict(datasets)
        self.drop = () if boxes else ("boxes", "labels", "masks")
        train_steps = pipeline_steps(cfg, train=True)
        val_steps = pipeline_steps(cfg, train=False)
        self.pipelines = {
            "train": build_pipeline(train_steps, mean, std, "data.transforms.train"),
            "val": build_pipeline(val_steps, mean, std, "data.transforms.val"),
        }

    def _loader(self, dataset: Any, split: str) -> DataLoader:
        train = split == "train"
        batch_size = (
            self.cfg.batch_size if train else (self.cfg.val_batch_size or self.cfg.batch_size)
        )
        sampler = None
        rank, world_size = self._rank_and_world_size()
        worker_init_fn = None
        if train and isinstance(dataset, MixedDataset):
            sampler = WeightedRandomSampler(
                dataset.sample_weights(), num_samples=len(dataset), replacement=True
            )
        if train:  # torch / numpy / random seeded per (rank, worker), as Lightning does
            worker_init_fn = partial(pl_worker_init_function, rank=rank)
        elif world_size > 1:
            sampler = unpadded_sampler(dataset, rank, world_size)
        workers = self.cfg.num_workers
        return SkipCountingLoader(
            TransformedDataset(
                dataset, self.pipelines[split], reseed=train, rank=rank, drop=self.drop
            ),
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=workers,
            collate_fn=partial(collate),
            pin_memory=self.cfg.pin_memory,
            persistent_workers=workers > 0,
            worker_init_fn=worker_init_fn,
            drop_last=False,
        )

    def _rank_and_world_size(self) -> tuple[int, int]:
        """This process's global rank and the number of processes (``(0, 1)`` outside a
        distributed run)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def train_dataloader(self) -> DataLoader:
        if "train" not in self.datasets:
            raise DataError("no data.train dataset is configured")
        return self._loader(self.datasets["train"], "train")

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per validation set (a list when several are named)."""
        sets = val_sets(self.datasets.get("val"))
        if not sets:
            raise DataError("no data.val dataset is configured")
        loaders = [self._loader(dataset, "val") for dataset in sets.values()]
        return loaders if len(loaders) > 1 else loaders[0]
