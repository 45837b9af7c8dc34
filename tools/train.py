#!/usr/bin/env python
"""Thin wrapper: `python tools/train.py ...` is `visionkit train ...`; see --help.

visionkit's own options (``--debug``, ``--version``) may come anywhere: they are moved before
the subcommand, so ``python tools/train.py --debug ...`` is ``visionkit --debug train ...``.
"""

import sys

from visionkit.cli import main

TOP_LEVEL = ("--debug", "--version")

if __name__ == "__main__":
    args = sys.argv[1:]
    top = [a for a in args if a in TOP_LEVEL]
    sys.exit(main([*top, "train", *(a for a in args if a not in TOP_LEVEL)]))
