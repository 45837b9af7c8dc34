"""What several subcommands share."""

from __future__ import annotations

from lightning.pytorch.utilities.rank_zero import rank_zero_only


def is_global_zero() -> bool:
    """Whether this process reports results: rank 0 of a distributed run (every rank runs the
    command, and Lightning sets the rank when the run starts, or torchrun / SLURM before), or
    the only process."""
    return getattr(rank_zero_only, "rank", 0) == 0
