#!/usr/bin/env python
"""Thin wrapper: `python tools/eval.py ...` is `visionkit eval ...`; see --help."""

import sys

from visionkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
