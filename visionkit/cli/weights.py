"""``visionkit weights pull NAME...`` and ``visionkit weights list``: the pretrained caches.

``pull`` downloads the libraries' pretrained files into their standard caches (Hugging Face
hub for timm, torch hub for torchvision), so a machine without network access can use
``pretrained: true`` after the cache folders are copied to it. ``list`` shows what the two
caches hold. The logic is :mod:`visionkit.models.hub`; this module only prints.
"""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    """What ``visionkit weights`` runs: exit 0, or an error for the first name that cannot be
    pulled (exit 2 for a name without weights to pull, 1 for a download or file that fails)."""
    from visionkit.models import hub
    from visionkit.models.backbones.pretrained import hf_cache_dir, torch_hub_dir

    if args.action == "pull":
        for name in args.names:
            pulled = hub.pull(name)
            verb = "downloaded" if pulled.downloaded else "already cached"
            print(
                f"{verb} {pulled.name}: {pulled.file} "
                f"({format_size(pulled.size)}, {pulled.tensors} tensors)"
            )
        return 0
    rows = hub.list_cached()
    caches = f"Hugging Face hub: {hf_cache_dir()}; torch hub: {torch_hub_dir()}"
    if not rows:
        print(f"no cached weights ({caches})", file=sys.stderr)
        return 0
    table = [("NAME", "SIZE", "FILE", "CACHE")] + [
        (r.name, format_size(r.size), str(r.file.relative_to(r.cache)), str(r.cache)) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for *cells, cache in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)), cache)
    print(
        f"{len(rows)} cached weights file{'s' if len(rows) != 1 else ''} ({caches})",
        file=sys.stderr,
    )
    return 0


def format_size(size: int) -> str:
    """``size`` bytes as ``"44.7 MB"`` (decimal units, as ``ls -h --si``)."""
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``weights`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "weights",
        help="download pretrained weights into the timm / torch hub caches, or list them",
        description="pull: download the pretrained files of timm and torchvision models into "
        "the libraries' own caches (Hugging Face hub: HF_HUB_CACHE, default "
        "~/.cache/huggingface/hub; torch hub: TORCH_HOME/hub/checkpoints, default "
        "~/.cache/torch/hub/checkpoints), e.g. on a machine with network access before the "
        "cache folders are copied to one without. list: the weights files both caches hold.\n\n"
        "example: visionkit weights pull resnet18.a1_in1k torchvision/resnet50\n"
        "example: visionkit weights pull torchvision:fcos_resnet50_fpn\n"
        "example: visionkit weights list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="pull NAME... | list"
    )
    pull = actions.add_parser(
        "pull",
        help="download the pretrained files of these names (already cached ones are kept)",
        description="Download into the library's cache and check that the file loads.\n\n"
        "example: visionkit weights pull resnet18.a1_in1k timm/convnext_atto\n"
        "example: visionkit weights pull torchvision/resnet50 torchvision:deeplabv3_resnet50",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pull.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="a timm model (resnet18, resnet18.a1_in1k, timm/resnet18), torchvision/<model> "
        "or torchvision:<model> (the weights enum's DEFAULT file), or torchvision's spelling of "
        "one file (ResNet50_Weights.IMAGENET1K_V1)",
    )
    actions.add_parser(
        "list",
        help="the weights files in the Hugging Face hub and torch hub caches",
        description="One line per file: NAME, SIZE, FILE (inside the cache) and CACHE; a "
        "count on stderr.\n\nexample: visionkit weights list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p
