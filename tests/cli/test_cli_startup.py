"""The ``visionkit`` command answers ``--help``, ``--version`` and argument errors without
importing torch (they took 6-12 s on a 2-core machine when every subcommand module imported
its work at the top), ``import visionkit`` imports its public names on first use, and the
registries fill themselves at their first lookup.

Each check runs in a fresh interpreter, since this process has imported torch already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from visionkit.cli import COMMANDS, build_parser

HEAVY = ("torch", "torchvision", "lightning", "albumentations", "timm", "pydantic", "numpy")

# Runs visionkit.cli.main(argv) and prints, as json, its exit status and the heavy packages
# then in sys.modules.
MAIN = f"""
import json, sys
from visionkit.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
print(json.dumps({{"status": status, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}),
      file=sys.stderr)
"""


def run_main(*argv: str) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", MAIN, *argv], capture_output=True, text=True, timeout=300
    )
    return json.loads(result.stderr.strip().splitlines()[-1]), result.stdout + result.stderr


def subcommand_names() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(sub.choices)


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        *[[name, "--help"] for name in subcommand_names()],
        ["train"],  # --config missing: argparse's error
        ["eval", "best.ckpt"],  # the hint that names --checkpoint
        ["export", "--checkpoint", "a.ckpt", "--format", "pdf", "--output", "x"],
    ],
    ids=" ".join,
)
def test_help_version_and_argument_errors_import_no_torch(argv):
    outcome, output = run_main(*argv)
    assert outcome["status"] in (0, 2), output[-3000:]
    assert outcome["heavy"] == [], f"visionkit {' '.join(argv)} imported {outcome['heavy']}"


def test_every_subcommand_is_checked():
    assert len(subcommand_names()) == len(COMMANDS)


def test_a_subcommand_still_imports_what_it_runs():
    outcome, output = run_main("list", "heads", "fcos*")
    assert outcome["status"] == 0, output[-3000:]
    assert "fcos\n" in output
    assert "torch" in outcome["heavy"]


FRESH = """
import json, sys
import visionkit
light = "torch" not in sys.modules
from visionkit.registry import DATASETS, HEADS
formats, heads = DATASETS.names(), HEADS.names("fcos*")
print(json.dumps({
    "light": light,
    "formats": formats,
    "heads": heads,
    "create_model": visionkit.create_model.__module__,
    "from_import": __import__("visionkit").load.__name__,
    "dir": sorted(set(visionkit.__all__) - set(dir(visionkit))),
}))
"""


def test_import_visionkit_is_light_and_its_names_and_registries_resolve_on_use():
    result = subprocess.run(
        [sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["light"]
    assert {"coco", "voc", "yolo", "mask_folder", "folder"} <= set(found["formats"])
    assert "fcos" in found["heads"]
    assert found["create_model"] == "visionkit.build.model"
    assert found["from_import"] == "load"
    assert found["dir"] == []


def test_an_unknown_attribute_of_visionkit_is_an_attribute_error():
    import visionkit

    with pytest.raises(AttributeError, match="no attribute 'create_modle'"):
        visionkit.create_modle  # noqa: B018
    from visionkit import Config, create_model  # the public names, through __getattr__

    assert create_model.__name__ == "create_model" and Config.__name__ == "Config"
    assert visionkit.registry.HEADS.kind == "head"  # submodules, as after the eager imports
