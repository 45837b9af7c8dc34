#!/usr/bin/env python
"""Thin wrapper: `python tools/benchmark.py ...` is `visionkit benchmark ...`; see --help."""

import sys

from visionkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
