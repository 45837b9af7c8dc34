#!/usr/bin/env python
"""Thin wrapper: `python tools/predict.py ...` is `visionkit predict ...`; see --help."""

import sys

from visionkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
