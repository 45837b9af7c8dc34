#!/usr/bin/env python
"""`python tools/bench_ddp.py ...`: training throughput of one process against DDP on the same
CPU cores (`benchmarks/ddp.py`); see --help and docs/benchmarks.md, "DDP on CPU"."""

import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)  # `benchmarks` is a folder of the repository, not installed

from benchmarks.ddp import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
