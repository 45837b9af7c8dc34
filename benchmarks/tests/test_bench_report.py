"""The JSON results and Markdown tables: the section writer, tables rewritten from a results
file, each side's settings named when they differ."""

from __future__ import annotations

import copy

import pytest

from benchmarks.cli import main
from benchmarks.report import TABLES, write_json, write_markdown_section
from benchmarks.tests.conftest import DOC, differing_results, fake_results
from visionkit.errors import ConfigError


def test_markdown_writer_replaces_only_its_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC, encoding="utf-8")
    write_markdown_section(path, "detection", "| new | table |\n")
    text = path.read_text(encoding="utf-8")
    assert text == DOC.replace("old table", "| new | table |")
    # a second section is appended, and the first stays as it was
    write_markdown_section(path, "detection-fp32", "fp32 table")
    again = path.read_text(encoding="utf-8")
    assert again.startswith(text.rstrip("\n"))
    assert again.endswith(
        "\n\n<!-- benchmark:detection-fp32:start -->\nfp32 table\n"
        "<!-- benchmark:detection-fp32:end -->\n"
    )
    write_markdown_section(path, "detection-fp32", "fp32 v2")
    assert path.read_text(encoding="utf-8") == again.replace("fp32 table", "fp32 v2")


def test_markdown_writer_creates_the_file_and_rejects_unbalanced_markers(tmp_path):
    path = tmp_path / "new.md"
    write_markdown_section(path, "detection", "table")
    assert path.read_text(encoding="utf-8") == (
        "<!-- benchmark:detection:start -->\ntable\n<!-- benchmark:detection:end -->\n"
    )
    broken = tmp_path / "broken.md"
    broken.write_text("<!-- benchmark:detection:start -->\nno end\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unbalanced"):
        write_markdown_section(broken, "detection", "table")


def test_from_json_rewrites_the_markdown_table(tmp_path):
    results = tmp_path / "results.json"
    write_json(results, fake_results(train_ratio=2.0))
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    assert main(["--from-json", str(results), "--markdown", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nIntro text.\n\n<!-- benchmark:detection:start -->\n")
    assert text.endswith("<!-- benchmark:detection:end -->\n\n## Later section\n\nkept as is\n")
    assert "old table" not in text
    assert "| fcos_r18 | visionkit | 1.0 | 16.0 | 20.0 | 20.0 | 10 | 900 (+100) / 850 (+10) |" in (
        text
    )
    assert "**2.00×**" in text and "**0.50×**" in text


def test_tables_name_the_baselines_settings_only_when_they_differ():
    old = fake_results(train_ratio=2.0)  # no per-side fields: results from before them
    for key in ("baseline_precision", "baseline_image_size"):
        del old["settings"][key]
    equal = copy.deepcopy(old)
    for which in ("ours", "baseline"):
        equal["sections"]["detection"][0][which].update(precision="bf16", image_size=[256, 256])
    table = TABLES["detection"](old)
    assert TABLES["detection"](equal) == table  # equal sides: exactly as before
    assert "; **bf16**, 256×256 px, training batch 8," in table
    assert "| | torchvision FCOS | 1.0 |" in table and "px)" not in table and "ours:" not in table

    differing = TABLES["detection"](differing_results())
    assert (
        "; ours: **bf16** at 160×160 px; baseline: **fp32** at 256×256 px, training batch 8,"
        in differing
    )
    assert "| | torchvision FCOS (fp32, 256×256 px) | 1.0 |" in differing
    assert "| fcos_r18 | visionkit (bf16, 160×160 px) | 1.0 |" in differing
    assert "**3.00×**" in differing
    # the precision alone differs: the same size on both sides, named in each cell
    precision_only = differing_results()
    entry = precision_only["sections"]["detection"][0]
    entry["image_size"] = entry["ours"]["image_size"] = entry["baseline"]["image_size"] = [64, 64]
    text = TABLES["detection"](precision_only)
    assert "ours: **bf16** at 64×64 px; baseline: **fp32** at 64×64 px" in text
    assert "| | torchvision FCOS (fp32, 64×64 px) |" in text
