"""The ```python blocks of docs/*.md run as written: in order, one namespace per file, in an
empty working directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from visionkit.registry import BACKBONES, DATASETS, HEADS, NECKS

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


DOC_FILES = sorted(p for p in DOCS.glob("*.md") if python_blocks(p))


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_python_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Components registered by an example must not leak into other tests.
    for registry in (BACKBONES, HEADS, NECKS, DATASETS):
        monkeypatch.setattr(registry, "_builders", dict(registry._builders))
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for i, block in enumerate(python_blocks(path)):
        code = compile(block, f"{path.name}[python block {i}]", "exec")
        exec(code, namespace)


def test_docs_have_examples():
    assert DOC_FILES, f"no ```python blocks found in {DOCS}"
