"""``python -m benchmarks`` (from the repository root) is ``python tools/benchmark.py``."""

import sys

from benchmarks.cli import main

sys.exit(main())
