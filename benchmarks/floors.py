"""Floors: the lowest ratios ours / baseline a run may show, recorded in a JSON file that CI
checks (``python tools/benchmark.py --quick --check-floors benchmarks/floors.json``). Only ratios
measured in the same run against the in-run baseline carry floors, never absolute times:
on a shared machine load changes absolute speeds severalfold, and both models alike."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from benchmarks.report import sides_differ
from visionkit.errors import ConfigError

# Ratios ours / baseline where larger is better; only these can carry a floor.
HIGHER_IS_BETTER = ("train_images_per_s",)


def case_entries(results: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(section, entry)`` of every model-against-model case of a results dict (the
    sections that are lists of entries with ``case`` and ``ratios``)."""
    for section, entries in results.get("sections", {}).items():
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, Mapping) and "case" in entry and "ratios" in entry:
                    yield section, entry


def unequal_cases(results: Mapping[str, Any]) -> list[str]:
    """``<section>/<case>`` of every case whose two models ran at different precisions or
    image sizes (``--baseline-precision`` / ``--baseline-image-size``)."""
    return [
        f"{section}/{entry['case']}"
        for section, entry in case_entries(results)
        if sides_differ(results, entry)
    ]


def refuse_floors_at_differing_sides(cases: list[str], floors_path: str | os.PathLike) -> None:
    """Raise a :class:`ConfigError` when ``cases`` (measured with the baseline at another
    precision or size than ours) is not empty: the floors are ratios at equal settings."""
    if cases:
        raise ConfigError(
            f"--check-floors compares ratios measured with both models at the same precision "
            f"and image size (the floors are ratios at equal settings), but the baseline of "
            f"{', '.join(cases)} runs at another precision or size than ours; drop "
            f"--baseline-precision / --baseline-image-size, or --check-floors",
            str(floors_path),
        )


def read_floors(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read a floors file: ``{"floors": {"<section>/<case>": {"<ratio>": floor}}}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read floors file: {err}", str(path)) from None
    floors = data.get("floors") if isinstance(data, dict) else None
    problems = []
    if not isinstance(floors, dict):
        problems.append('expected {"floors": {"<section>/<case>": {"<ratio>": number}}}')
        floors = {}
    for key, metrics in floors.items():
        if not isinstance(metrics, dict):
            problems.append(f"floors.{key}: expected a mapping of ratio name to number")
            continue
        for metric, value in metrics.items():
            if metric not in HIGHER_IS_BETTER:
                problems.append(
                    f"floors.{key}.{metric}: a floor needs a ratio where larger is better "
                    f"({', '.join(HIGHER_IS_BETTER)})"
                )
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(f"floors.{key}.{metric}: expected a number, got {value!r}")
    if problems:
        raise ConfigError(problems, str(path))
    return floors


def check_floors(
    results: Mapping[str, Any], floors: Mapping[str, Mapping[str, float]]
) -> tuple[list[str], list[str]]:
    """Compare the ratios of ``results`` with their floors.

    Returns:
        ``(failures, notes)``: one message per ratio below its floor, and one per floor whose
        case was not measured in this run.

    Raises:
        ConfigError: when a case's baseline ran at another precision or image size than ours
            (floors are ratios at equal settings).
    """
    refuse_floors_at_differing_sides(unequal_cases(results), "floors")
    measured = {
        f"{section}/{entry['case']}": entry["ratios"] for section, entry in case_entries(results)
    }
    failures, notes = [], []
    for key, metrics in floors.items():
        if key not in measured:
            notes.append(f"{key}: not measured in this run; floor not checked")
            continue
        for metric, floor in metrics.items():
            ratio = measured[key].get(metric)
            if ratio is None:
                failures.append(f"{key}: ratio {metric} missing from the results")
            elif ratio < floor:
                failures.append(
                    f"{key}: {metric} ours/baseline = {ratio:.2f}, below the floor {floor:.2f}"
                )
    return failures, notes
