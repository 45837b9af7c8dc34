#!/usr/bin/env python
"""Thin wrapper: `python tools/train.py ...` is `visionkit train ...`; see --help."""

import sys

from visionkit.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
