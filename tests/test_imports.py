"""The library works without Lightning: ``import visionkit`` and every module outside
``visionkit/engine/`` and ``visionkit/cli/`` leave ``lightning`` and ``pytorch_lightning`` out of
``sys.modules`` (only training, evaluation and the command line need them).

The imports run in fresh interpreters, since this process may have imported Lightning already.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from functools import cache

import pytest

import visionkit

LIGHTNING = ("lightning", "pytorch_lightning")
# The only packages that may import Lightning.
LIGHTNING_PACKAGES = ("visionkit.engine", "visionkit.cli")
PUBLIC = [
    "visionkit",
    "visionkit.models",
    "visionkit.data",
    "visionkit.inference",
    "visionkit.export",
]
# Modules that import Lightning today although they should not, each with the reason. Their
# test is an expected failure (strict: once the module is fixed, remove it from here).
KNOWN_LIGHTNING_IMPORTS: dict[str, str] = {}

# Imports the modules named in argv in order and stops at the first one after which a Lightning
# package is in sys.modules: prints {"clean": [...], "culprit": name or null}. The modules
# imported before the culprit were imported without Lightning, so the culprit imports it (itself
# or through a module it imports).
FIND_FIRST = f"""
import importlib, json, sys
clean = []
for name in sys.argv[1:]:
    importlib.import_module(name)
    if any(m in sys.modules for m in {LIGHTNING!r}):
        print(json.dumps({{"clean": clean, "culprit": name}}))
        break
    clean.append(name)
else:
    print(json.dumps({{"clean": clean, "culprit": None}}))
"""


def library_modules() -> list[str]:
    """Every module of the package outside engine/ and cli/ (and ``python -m visionkit``'s
    ``__main__``), found by walking visionkit/."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages(visionkit.__path__, "visionkit.", onerror=_raise)
        if not info.name.startswith(LIGHTNING_PACKAGES)
        and info.name != "visionkit.__main__"  # runs the command line when imported
    )


def _raise(name: str) -> None:
    """A package that cannot be imported fails the walk (instead of hiding its modules)."""
    raise ImportError(f"cannot import {name} to walk its modules")


@cache
def modules_importing_lightning() -> frozenset[str]:
    """The library modules whose import brings Lightning into ``sys.modules``: one fresh
    interpreter per such module, plus one."""
    remaining, culprits = ["visionkit", *library_modules()], set()
    while remaining:
        result = subprocess.run(
            [sys.executable, "-c", FIND_FIRST, *remaining],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        found = json.loads(result.stdout.splitlines()[-1])
        if found["culprit"] is None:
            break
        culprits.add(found["culprit"])
        remaining = remaining[len(found["clean"]) + 1 :]
    return frozenset(culprits)


def test_the_public_packages_import_without_lightning():
    code = (
        f"import sys; import {', '.join(PUBLIC)}; "
        f"print([m for m in {LIGHTNING!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_the_walk_finds_the_library_and_leaves_out_engine_and_cli():
    names = library_modules()
    assert {"visionkit.config", "visionkit.build.model", "visionkit.data.batch"} <= set(names)
    assert not [n for n in names if n.startswith(LIGHTNING_PACKAGES)]


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(reason=KNOWN_LIGHTNING_IMPORTS[name], strict=True)
            if name in KNOWN_LIGHTNING_IMPORTS
            else (),
        )
        for name in ["visionkit", *library_modules()]
    ],
)
def test_the_module_imports_without_lightning(module):
    assert module not in modules_importing_lightning(), f"importing {module} imports Lightning"


# Records every URL opened through urllib (refusing it), imports the modules named in argv, and
# prints the URLs as json. NO_ALBUMENTATIONS_UPDATE is removed first: the user has not set it.
RECORD_URLS = """
import json, os, sys, urllib.request
os.environ.pop("NO_ALBUMENTATIONS_UPDATE", None)
opened = []
def refuse(self, url, *args, **kwargs):
    opened.append(getattr(url, "full_url", url))
    raise OSError("no network here")
urllib.request.OpenerDirector.open = refuse
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(opened))
"""


def urls_opened_by_importing(*modules: str) -> tuple[list[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", RECORD_URLS, *modules],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_importing_visionkit_and_its_data_pipeline_asks_no_server_for_updates():
    """albumentations alone asks PyPI for its latest release on import (a warning on every
    command of an offline machine); through visionkit it does not."""
    opened, _ = urls_opened_by_importing("albumentations")
    assert any("pypi.org" in url for url in opened)  # what visionkit turns off

    opened, stderr = urls_opened_by_importing("visionkit", "visionkit.data.transforms")
    assert opened == []
    assert "Error fetching version info" not in stderr
