#!/usr/bin/env python
"""Thin wrapper: `python tools/bench_ddp.py ...` runs `visionkit.bench_ddp`; see --help."""

import sys

from visionkit.bench_ddp import main

if __name__ == "__main__":
    sys.exit(main())
