#!/usr/bin/env python
"""Thin wrapper: `python tools/export.py ...` is `visionkit export ...`; see --help."""

import sys

from visionkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
