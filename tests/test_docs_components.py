"""Every registered head, neck and dataset format is documented in a hand-written page (not
only in the generated config reference), with its name in backticks."""

from __future__ import annotations

from pathlib import Path

import pytest

import visionkit
from visionkit.registry import DATASETS

DOCS = Path(__file__).resolve().parents[1] / "docs"
GENERATED = {"configs.md"}


def _written_docs() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")) if p.name not in GENERATED)


COMPONENTS = (
    [("head", n) for n in visionkit.list_heads()]
    + [("neck", n) for n in visionkit.list_necks()]
    + [("dataset", n) for n in DATASETS.names()]
)


@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}:{n}" for k, n in COMPONENTS])
def test_every_registered_component_is_documented(kind, name):
    text = _written_docs()
    assert f"`{name}`" in text or f"name: {name}" in text, (
        f"the {kind} {name!r} is registered but no page of docs/ (other than the generated "
        "configs.md) names it"
    )


def test_the_component_list_is_not_empty():
    assert len(COMPONENTS) >= 10
