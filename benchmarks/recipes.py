"""Which recipes are benchmarked, and against what: a recipe is a YAML path or the name of a
shipped recipe in the repository's ``configs/shapes/``, read with the normal config loader
(:func:`visionkit.config.load_config`); its head picks the case (:data:`CASES`)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.cases import BenchmarkCase
from benchmarks.classification import ClassificationCase
from benchmarks.detection import DetectionCase
from benchmarks.harness import Settings
from benchmarks.multitask import MultitaskCase
from benchmarks.segmentation import SegmentationCase
from visionkit.config import load_config
from visionkit.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_DIR = REPO_ROOT / "configs" / "shapes"
DEFAULT_RECIPES = ("classify_r18", "fcos_r18", "retinanet_r18", "semseg_fpn_r18")

# Recipe head name → case class.
CASES: dict[str, type[BenchmarkCase]] = {
    "linear": ClassificationCase,
    "mlp": ClassificationCase,
    "fcos": DetectionCase,
    "retinanet": DetectionCase,
    "semantic_fpn": SegmentationCase,
    "deeplabv3plus": SegmentationCase,
}


def resolve_recipe(recipe: str) -> Path:
    """A recipe path as given, or the name of a shipped recipe (``fcos_r18``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = RECIPE_DIR / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    raise ConfigError(f"recipe {recipe!r}: no such file, nor a shipped recipe ({', '.join(names)})")


def case_for_recipe(recipe: str, settings: Settings) -> BenchmarkCase:
    """The benchmark case of a recipe, chosen by its head (:data:`CASES`); a recipe with
    several heads is a :class:`~benchmarks.multitask.MultitaskCase`."""
    path = resolve_recipe(recipe)
    config = load_config(path)
    heads = [spec["name"] for spec in config.model.heads.values()]
    case_class = CASES.get(heads[0]) if len(heads) == 1 else None
    if len(heads) > 1:
        case_class = MultitaskCase
    if case_class is None:
        raise ConfigError(
            f"{path}: no benchmark case for heads {heads}; cases exist for one head of: "
            f"{', '.join(sorted(CASES))}, or several heads (multi-task)"
        )
    return case_class(path.stem, settings, config, str(path))
