#!/usr/bin/env python
"""`python tools/benchmark.py ...`: the benchmarks of the repository's `benchmarks/` package
(speed of the shipped recipes against torchvision's / timm's, in the same run); see --help and
docs/benchmarks.md. Run it from a checkout: the benchmarks are not part of the wheel."""

import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # `benchmarks` is a folder of the repository, not installed

from benchmarks.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
