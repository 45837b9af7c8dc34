"""``visionkit show-data --config X.yaml``: draw the labels of a split as the model will see them
(after the data pipeline), and print and plot the split's label statistics.

The datasets, pipelines and model come from the same builders as training
(:func:`visionkit.build.build_datasets`, :func:`~visionkit.build.build_pipelines`,
:func:`~visionkit.build.build_model`; the model is built without weights, on the meta device,
only for its heads: they say which labels are drawn and with which class names). Training
pictures are the first draws of epoch 0 with their augmentations, seeded exactly as
``visionkit train`` seeds them (:class:`~visionkit.engine.sampling.EpochSampler`); validation
and test pictures are the first images of the split through the evaluation pipeline. Labels
are drawn by :func:`visionkit.engine.pictures.ground_truth` and
:func:`visionkit.inference.draw.draw_predictions`, like the ground truth of the validation
pictures of a run.

The statistics are those ``check-data`` prints (:class:`visionkit.data.checks.DataReport`:
images, boxes, image sizes, counts per class), plus the boxes per COCO area range (small,
medium, large, from pycocotools' ``Params``), for the whole split in its original images.

Everything goes to a new folder (``<output_dir>/show-data/<name>``, or ``--output-dir``): a
folder that already holds files is never written into; the next free ``<folder>-2``,
``<folder>-3``, ... is taken instead.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionkit.choices import SPLITS
from visionkit.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from visionkit.config import Config
    from visionkit.data.checks import DataReport

#: Pictures per grid PNG (4 columns).
PER_GRID = 16
COLUMNS = 4
#: Pictures whose shorter side is under this many pixels are enlarged by a whole factor, and
#: none is shown with a side over ``MAX_SIDE`` (as the validation pictures of a run).
MIN_SIDE = 192
MAX_SIDE = 512
CAPTION = 14
#: The COCO area ranges of the box statistics, and how they are printed.
SIZE_NAMES = ("small", "medium", "large")
SIZE_TEXT = {
    "small": "small (< 32^2)",
    "medium": "medium (32^2 to 96^2)",
    "large": "large (>= 96^2)",
}


def output_folder(folder: Path) -> Path:
    """A new, empty folder to write into: ``folder`` when it does not exist or is empty, else
    the first of ``folder-2``, ``folder-3``, ... that is
    (:func:`~visionkit.checkpoint.unused_folder`). It is created here."""
    from visionkit.checkpoint import holds_files, unused_folder

    chosen = unused_folder(folder, holds_files)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def split_datasets(cfg: Config, split: str, needs: Sequence[str]) -> tuple[dict[str, Any], Any]:
    """The datasets the model is built from (the training set, for its class names; without
    one, the split shown) and the datasets of ``split`` (one dataset, or a name → dataset dict
    for a mix). No other split is read. The shown split's data warnings are not logged: its
    report, printed, holds them."""
    from visionkit.build import build_datasets, build_split
    from visionkit.build.data import split_spec
    from visionkit.cli._shared import report_warnings_muted
    from visionkit.data.classes import class_source

    if split == "train" and cfg.data.train is None:
        raise ConfigError(
            "data.train: not set; give it in the config or as data.train.images=... / "
            "data.train.root=..., or show another split: --split val"
        )
    spec = split_spec(cfg.data, split) if split != "train" else None  # a clear error if unset
    train_only = cfg.data.model_copy(update={"val": None})
    if split == "train":
        with report_warnings_muted():
            datasets = build_datasets(train_only, needs)
        return datasets, datasets["train"]
    train = build_datasets(train_only, needs).get("train")  # its class order
    with report_warnings_muted():
        shown = build_split(
            spec,
            split=split,
            label_names=getattr(train, "label_names", None),
            needs=needs,
            category_ids=getattr(train, "category_ids", None),
            reference=f"data.train ({class_source(train)})",
        )
    return ({"train": train} if train is not None else {"val": shown}), shown


def shown_model(cfg: Config, datasets: Mapping[str, Any]) -> Any:
    """The run's model without weights (meta device, no pretrained or ``init_from`` file
    read): its heads decide what is drawn, its backbone's mean/std undo the normalisation."""
    import torch

    from visionkit.build import build_model

    cfg = cfg.model_copy(deep=True)
    cfg.model.backbone.pretrained = False
    cfg.model.init_from = None
    with torch.device("meta"):  # structure only: drawing labels needs no weights
        return build_model(cfg, datasets)


def to_uint8(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A pipeline's normalised ``float [3, H, W]`` image back to ``H×W×3 uint8`` RGB (the
    inverse of albumentations' ``Normalize``, ``max_pixel_value=255``)."""
    import torch

    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    pixels = (image.float().cpu() * s + m) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def drawn_samples(
    cfg: Config, model: Any, shown: Any, split: str, n: int
) -> list[tuple[str, np.ndarray]]:
    """``(caption, picture)`` of the first ``n`` samples of ``split`` after the pipeline,
    their labels drawn: for training the first draws of epoch 0, augmented and seeded as
    training does; otherwise the first images (shared out over the sets of a mix)."""
    from visionkit.build import build_pipelines, dropped_keys
    from visionkit.data.datasets import (
        MixedDataset,
        TransformedDataset,
        first_images,
        set_label,
        val_sets,
    )
    from visionkit.engine.pictures import ground_truth
    from visionkit.engine.sampling import EpochSampler
    from visionkit.inference.draw import draw_predictions, enlarged

    pipelines = build_pipelines(cfg.data, model.backbone.mean, model.backbone.std)
    drop = dropped_keys(cfg)
    if split == "train":
        weights = shown.sample_weights() if isinstance(shown, MixedDataset) else None
        order = list(EpochSampler(shown, cfg.seed, weights=weights))[:n]
        data = TransformedDataset(shown, pipelines["train"], reseed=True, drop=drop)
        mixed = isinstance(shown, MixedDataset)  # each draw names its set
        items = [
            (f"draw {i}" + (f" {shown.part_of(key)[0]}:" if mixed else ""), data, key)
            for i, key in enumerate(order)
        ]
    else:
        sets = val_sets(shown)
        data = {
            name: TransformedDataset(ds, pipelines["val"], drop=drop) for name, ds in sets.items()
        }
        items = [
            (set_label(name, sets) + f"#{i}", data[name], i) for name, _, i in first_images(sets, n)
        ]
    pictures = []
    for label, data, index in items:
        sample = data[index]
        image = to_uint8(sample["image"], model.backbone.mean, model.backbone.std)
        path = Path(str(data.dataset.path_of(index))) if hasattr(data.dataset, "path_of") else None
        name = f" {path.name}" if path else ""
        caption = f"{label}{name} (id {sample.get('image_id')})"
        scale = max(1, -(-MIN_SIDE // min(image.shape[:2])))  # small images: enlarged, then drawn
        pictures.append(
            (caption, draw_predictions(*enlarged(image, ground_truth(model, sample), scale)))
        )
    return pictures


def write_grids(
    pictures: Sequence[tuple[str, np.ndarray]], folder: Path, prefix: str
) -> list[Path]:
    """The pictures in grids of :data:`PER_GRID` (``<prefix>_01.png``, ...), each under its
    caption."""
    from PIL import Image, ImageDraw

    from visionkit.evaluation.plots import save_image

    paths = []
    for start in range(0, len(pictures), PER_GRID):
        tiles = []
        for caption, picture in pictures[start : start + PER_GRID]:
            tile = Image.fromarray(picture)
            scale = max(1, -(-MIN_SIDE // min(tile.size)))  # small images: enlarged
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
            tile.thumbnail((MAX_SIDE, MAX_SIDE))
            tiles.append((caption, tile))
        width = max(t.width for _, t in tiles)
        height = max(t.height for _, t in tiles) + CAPTION
        columns = min(COLUMNS, len(tiles))
        rows = -(-len(tiles) // columns)
        gap = 4
        grid = Image.new(
            "RGB",
            (columns * (width + gap) - gap, rows * (height + gap) - gap),
            (255, 255, 255),
        )
        draw = ImageDraw.Draw(grid)
        for k, (caption, tile) in enumerate(tiles):
            x, y = (k % columns) * (width + gap), (k // columns) * (height + gap)
            grid.paste(tile, (x, y + CAPTION))
            draw.text((x + 2, y + 1), caption[: max(8, width // 6)], fill=0)
        path = folder / f"{prefix}_{start // PER_GRID + 1:02d}.png"
        save_image(grid, path)
        paths.append(path)
    return paths


def parts_of(where: str, shown: Any) -> dict[str, Any]:
    """``config path → dataset`` of each dataset of a split (each part of a mix)."""
    from visionkit.data.datasets import MixedDataset

    if isinstance(shown, MixedDataset):
        return {f"{where}.{name}": ds for name, ds in shown.parts.items()}
    if isinstance(shown, dict):
        return {f"{where}.{name}": ds for name, ds in shown.items()}
    return {where: shown}


def box_sizes(dataset: Any) -> Counter:
    """Boxes per COCO area range (``small``, ``medium``, ``large``: pycocotools' ``Params``
    ranges, on the box area ``w × h`` in the original image), from the boxes the reader kept
    (the COCO reader family keeps them in ``targets``; another reader is read sample by
    sample). Called for datasets with box labels only."""
    import numpy as np
    from pycocotools.cocoeval import Params

    params = Params(iouType="bbox")
    ranges = {
        label: bounds for label, bounds in zip(params.areaRngLbl, params.areaRng, strict=True)
    }
    per_image = getattr(dataset, "targets", None)
    if isinstance(per_image, list):
        boxes = [np.asarray(t["boxes"]).reshape(-1, 4) for t in per_image]
    else:
        boxes = [np.asarray(dataset[i].get("boxes", np.zeros((0, 4)))) for i in range(len(dataset))]
    stacked = np.concatenate(boxes).reshape(-1, 4) if boxes else np.zeros((0, 4))
    areas = (stacked[:, 2] - stacked[:, 0]) * (stacked[:, 3] - stacked[:, 1])
    bounds = [ranges["small"][1], ranges["medium"][1]]  # 32², 96²
    places = np.digitize(areas, bounds)  # 0: < 32², 1: < 96², 2: the rest
    return Counter({name: int((places == k).sum()) for k, name in enumerate(SIZE_NAMES)})


def statistics(where: str, dataset: Any) -> tuple[DataReport, Counter | None, str]:
    """The check-data report of one dataset (its reader's own, else read sample by sample),
    its boxes per COCO area range, and the text printed for both."""
    from visionkit.data.checks import inspect_samples
    from visionkit.data.classes import class_source

    report = getattr(dataset, "report", None)
    if report is None:
        report = inspect_samples(dataset, class_source(dataset), type(dataset).__name__)
    elif hasattr(dataset, "class_statistics") and "semantic" not in report.class_counts:
        # a mask folder counts its classes when it decodes its label maps (check-data's
        # check); training's header check leaves them out: counted here, on a copy
        report = dataclasses.replace(
            report, class_counts=dict(report.class_counts), notes=list(report.notes)
        )
        dataset.class_statistics(report)
    sizes = box_sizes(dataset) if report.boxes_per_image else None
    shown = report
    if sizes is not None:  # one more line of the report (a copy: the reader's stays as it is)
        text = ", ".join(f"{SIZE_TEXT[k]} {sizes[k]}" for k in SIZE_NAMES)
        line = f"boxes per COCO area range (box area in original pixels): {text}"
        shown = dataclasses.replace(report, notes=[*report.notes, line])
    return report, sizes, f"{where}: {shown.render()}"


def plot_statistics(entries: Sequence[tuple[str, DataReport, Counter | None]], path: Path) -> None:
    """One row of bar charts per dataset: its counts per class (one chart per label family),
    its boxes per COCO area range and its most common image sizes."""
    from visionkit.data.checks import count_unit
    from visionkit.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    rows = []
    for where, report, sizes in entries:
        charts = []
        for family, counts in report.class_counts.items():
            charts.append((f"{where}: {count_unit(family)} per class", dict(counts)))
        if sizes is not None:
            charts.append((f"{where}: boxes per COCO area", {k: sizes[k] for k in SIZE_NAMES}))
        common = report.image_sizes.most_common(10)
        charts.append((f"{where}: image sizes (HxW)", {f"{h}x{w}": c for (h, w), c in common}))
        rows.append(charts)
    columns = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(4.5 * columns, 3.5 * len(rows)), squeeze=False
    )
    for r, charts in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            if c >= len(charts):
                ax.axis("off")
                continue
            title, counts = charts[c]
            ax.bar(range(len(counts)), list(counts.values()), color="tab:blue")
            ax.set_xticks(range(len(counts)), list(counts), rotation=45, ha="right", fontsize=8)
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def run(args: argparse.Namespace) -> int:
    """What ``visionkit show-data`` runs; returns the exit status."""
    from visionkit.build import targets_needed
    from visionkit.config import load_config

    if args.n < 1:
        raise ConfigError(
            f"--n: expected a number of images of at least 1, got {args.n}", options=True
        )
    cfg = load_config(args.config, args.overrides)
    needs = targets_needed(cfg)
    datasets, shown = split_datasets(cfg, args.split, needs)
    model = shown_model(cfg, datasets)
    default = Path(cfg.output_dir) / "show-data" / cfg.name
    folder = output_folder(Path(args.output_dir) if args.output_dir else default)
    entries = []
    for where, dataset in parts_of(f"data.{args.split}", shown).items():
        report, sizes, text = statistics(where, dataset)
        print(text, flush=True)
        entries.append((where, report, sizes))
    pictures = drawn_samples(cfg, model, shown, args.split, args.n)
    grids = write_grids(pictures, folder, args.split)
    plot_statistics(entries, folder / "statistics.png")
    how = (
        f"the first {len(pictures)} draws of epoch 0 (seed {cfg.seed}), with the training "
        "augmentations"
        if args.split == "train"
        else f"the first {len(pictures)} images, through the evaluation pipeline"
    )
    print(f"show-data: data.{args.split}: {how}, drawn in {', '.join(str(p) for p in grids)}")
    print(f"show-data: label statistics plotted in {folder / 'statistics.png'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``show-data`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "show-data",
        help="draw the labels of a split as the model sees them, with label statistics",
        description="Draw the ground truth of a config's data (boxes with class names, "
        "instance masks, semantic maps, image classes) after the data pipeline, as the model "
        "sees it: for --split train the first draws of epoch 0 with the training augmentations, "
        "seeded as training seeds them; for val / test the first images through the evaluation "
        "pipeline. Writes grid PNGs (<split>_01.png, ...) and statistics.png (counts per class, "
        "boxes per COCO area range, image sizes) into a new folder, and prints the statistics "
        "of the whole split (those of check-data, plus the box sizes).\n\n"
        "example: visionkit show-data --config configs/quickstart.yaml\n"
        "example: visionkit show-data --config configs/quickstart.yaml --split val --n 8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="path to the YAML config")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="which data to show, e.g. --split val (default train)",
    )
    p.add_argument(
        "--n",
        type=int,
        default=32,
        metavar="N",
        help=f"how many images to draw, {PER_GRID} per PNG, e.g. --n 8 (default 32)",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="where to write (default <output_dir>/show-data/<name> from the config); a "
        "folder holding files is never written into: DIR-2, DIR-3, ... is taken instead",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, e.g. data.image_size=256 (values are parsed as YAML)",
    )
    return p
