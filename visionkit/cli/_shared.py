"""What several subcommands share."""

from __future__ import annotations

import argparse

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from visionkit.inference.tta import TTA_MODES


def is_global_zero() -> bool:
    """Whether this process reports results: rank 0 of a distributed run (every rank runs the
    command, and Lightning sets the rank when the run starts, or torchrun / SLURM before), or
    the only process."""
    return getattr(rank_zero_only, "rank", 0) == 0


def add_tta_argument(parser: argparse.ArgumentParser) -> None:
    """``--tta`` of ``predict`` and ``eval``: test-time augmentation
    (:mod:`visionkit.inference.tta`)."""
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation: 'flip' also runs the mirrored image and merges both "
        "(averaged class probabilities and label maps; boxes merged by NMS)",
    )
