"""``visionkit list backbones|heads|necks|datasets [PATTERN]``: registered names, one per line.

The names go to stdout (so ``visionkit list backbones 'resnet*' | wc -l`` counts them) and a
count line goes to stderr. ``PATTERN`` is an ``fnmatch`` pattern, as in
:func:`visionkit.list_backbones`.
"""

from __future__ import annotations

import argparse
import os
import sys

from visionkit.registry import BACKBONES, DATASETS, HEADS, NECKS, Registry

KINDS = ("backbones", "heads", "necks", "datasets")


def registry_of(kind: str) -> Registry:
    """The registry listed by ``visionkit list <kind>``."""
    return {"backbones": BACKBONES, "heads": HEADS, "necks": NECKS, "datasets": DATASETS}[kind]


def list_names(kind: str, pattern: str | None = None) -> list[str]:
    """Sorted names of the registered ``kind`` (see :data:`KINDS`), filtered by ``pattern``."""
    return registry_of(kind).names(pattern)


def run(args: argparse.Namespace) -> int:
    """What ``visionkit list`` runs; exit 1 when a pattern matches nothing."""
    names = list_names(args.kind, args.pattern)
    try:
        sys.stdout.write("".join(f"{name}\n" for name in names))
        sys.stdout.flush()
    except BrokenPipeError:  # `visionkit list backbones | head`: the reader has what it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    what = args.kind if len(names) != 1 else args.kind[:-1]
    matching = f" matching {args.pattern!r}" if args.pattern else ""
    print(f"{len(names)} {what}{matching}", file=sys.stderr)
    if not names and args.kind == "backbones" and args.pattern:
        print(
            "visionkit lists the timm / torchvision models that give feature maps at increasing "
            "strides from any input size (plain ViTs through a simple feature pyramid); MLP-Mixers "
            "and fixed-size models (MaxViT, LeViT) are left out on purpose "
            "(model.backbone.name=NAME says why for one)",
            file=sys.stderr,
        )
    return 0 if names or not args.pattern else 1


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``list`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "list",
        help="list registered backbones, heads, necks or dataset formats",
        description="Print the registered names of one kind of component, one per line, "
        "sorted; a count goes to stderr. Exits 1 when a PATTERN matches nothing.\n\n"
        "example: visionkit list backbones 'convnext*'\n"
        "example: visionkit list heads",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=KINDS, help="what to list: " + ", ".join(KINDS))
    p.add_argument(
        "pattern",
        nargs="?",
        metavar="PATTERN",
        help="fnmatch pattern on the names, e.g. 'resnet*' (quote it in the shell)",
    )
    return p
