"""Packaging (issue 19, item 9): every third-party module that ``visionkit/`` imports is a
declared dependency in ``pyproject.toml`` (modules imported on demand through
``export.onnx.require`` / ``importlib.import_module``: in an extra), with floors that cover the
library features the code uses.

Import names are mapped to distributions by the installed metadata
(``importlib.metadata.packages_distributions``: ``PIL`` → ``pillow``, ``yaml`` → ``pyyaml``,
``cv2`` → ``opencv-python-headless``), so a module that ships in another distribution than its
name says is found too.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
#: Calls that import the module named by their first argument (optional dependencies).
ON_DEMAND = {"require", "import_module"}
#: (distribution, feature, first version that has it, how the code is searched for it)
FEATURE_FLOORS = [
    ("lightning", "lightning.pytorch.callbacks.WeightAveraging", "2.6", "import"),
    ("lightning", "Trainer.fit/validate/test/predict(weights_only=...)", "2.6", "trainer_call"),
]
TRAINER_METHODS = ("fit", "validate", "test", "predict")
#: Optional modules whose distribution is not named like them (when they are not installed).
MODULE_DISTRIBUTIONS = {"faiss": ["faiss-cpu"]}
#: Extras removed since their packages became core dependencies (opencv: cv2 is imported).
REMOVED_EXTRAS = ("video",)


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def requirements(items: Iterable[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, items)}


def imports_of(package: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Top-level module → files, of the absolute imports of every ``.py`` file under
    ``package`` (``import x.y``, ``from x import y``, also inside functions), and of the
    modules named by a string given to :data:`ON_DEMAND` calls."""
    static: dict[str, list[str]] = defaultdict(list)
    on_demand: dict[str, list[str]] = defaultdict(list)
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    static[alias.name.split(".")[0]].append(where)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                static[node.module.split(".")[0]].append(where)
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                arg = node.args[0]
                if (
                    name in ON_DEMAND
                    and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                ):
                    on_demand[arg.value.split(".")[0]].append(where)
    return dict(static), dict(on_demand)


def undeclared(
    imports: Mapping[str, list[str]], declared: Iterable[str], own: str = "visionkit"
) -> list[str]:
    """One line per third-party module of ``imports`` whose distribution is not in
    ``declared`` (canonical names); standard-library modules and ``own`` are left out."""
    names = {canonicalize_name(d) for d in declared}
    known = packages_distributions()
    problems = []
    for module, files in sorted(imports.items()):
        if module in sys.stdlib_module_names or module in (own, "__future__"):
            continue
        # not installed: the distribution named in MODULE_DISTRIBUTIONS, else the module's name
        dists = known.get(module) or MODULE_DISTRIBUTIONS.get(module) or [module]
        if not any(canonicalize_name(d) in names for d in dists):
            problems.append(
                f"{module} (distribution {' or '.join(sorted(set(dists)))}), imported by "
                f"{', '.join(sorted(set(files))[:3])}"
            )
    return problems


def test_every_third_party_import_of_visionkit_is_a_declared_dependency():
    static, _ = imports_of(ROOT / "visionkit")
    declared = requirements(pyproject()["project"]["dependencies"])
    problems = undeclared(static, declared)
    assert not problems, "not in [project] dependencies of pyproject.toml:\n" + "\n".join(problems)


def test_modules_imported_on_demand_are_declared_in_an_extra():
    _, on_demand = imports_of(ROOT / "visionkit")
    assert {"onnx", "onnxruntime"} <= set(on_demand)  # export.onnx.require("onnx"), ...
    project = pyproject()["project"]
    declared = set(requirements(project["dependencies"]))
    for extra in project["optional-dependencies"].values():
        declared |= set(requirements(extra))
    problems = undeclared(on_demand, declared)
    assert not problems, "in no extra of pyproject.toml:\n" + "\n".join(problems)


def test_the_check_names_an_undeclared_import_by_its_distribution(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("import json\nfrom yaml import safe_load\nimport PIL.Image\n")
    (package / "b.py").write_text("def f():\n    import tqdm\n    from pkg import a\n")
    static, _ = imports_of(package)
    assert sorted(static) == ["PIL", "json", "pkg", "tqdm", "yaml"]
    problems = undeclared(static, ["PyYAML", "tqdm"], own="pkg")
    assert problems == ["PIL (distribution pillow), imported by pkg/a.py"]


def uses_feature(kind: str, feature: str) -> list[str]:
    """The files of ``visionkit/`` that use ``feature``: an ``import`` of it, or a Trainer
    call (``trainer_call``) with a ``weights_only`` keyword."""
    found = []
    for path in sorted((ROOT / "visionkit").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if kind == "import" and isinstance(node, ast.ImportFrom) and node.module:
                if any(f"{node.module}.{a.name}" == feature for a in node.names):
                    found.append(path.name)
            elif kind == "trainer_call" and isinstance(node, ast.Call):
                method = getattr(node.func, "attr", None)
                keywords = {k.arg for k in node.keywords}
                if method in TRAINER_METHODS and "weights_only" in keywords:
                    found.append(path.name)
    return found


@pytest.mark.parametrize(("dist", "feature", "version", "kind"), FEATURE_FLOORS)
def test_the_floors_cover_the_features_used(dist, feature, version, kind):
    used = uses_feature(kind, feature)
    assert used, f"{feature} is no longer used: remove its row from FEATURE_FLOORS"
    requirement = requirements(pyproject()["project"]["dependencies"])[dist]
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    assert floors and max(floors) >= Version(version), (
        f"{', '.join(used)} use {feature}, new in {dist} {version}, but pyproject.toml "
        f"declares {requirement}"
    )


def test_no_extra_repeats_a_core_dependency_and_no_page_names_a_removed_extra():
    project = pyproject()["project"]
    core = set(requirements(project["dependencies"]))
    extras = project["optional-dependencies"]
    for name, items in extras.items():
        if name != "dev":  # dev gathers the test tools and every extra's packages
            assert not set(requirements(items)) & core, f"[{name}] only repeats core dependencies"
    assert not set(REMOVED_EXTRAS) & set(extras)
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "visionkit").rglob("*.py")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for extra in REMOVED_EXTRAS:
            assert f"[{extra}]" not in text, f"{path.relative_to(ROOT)} names the [{extra}] extra"


def test_every_module_of_the_package_stays_small():
    """docs/architecture.md: no file of ``visionkit/`` over 500 lines (a concept that grows
    past it is split into modules of its own)."""
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in (ROOT / "visionkit").rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 500} == {}
