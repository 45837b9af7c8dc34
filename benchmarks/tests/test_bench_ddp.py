"""``tools/bench_ddp.py``: the batch split between DDP processes, and its option checks (the
timed run itself spawns processes for minutes: docs/benchmarks.md, "DDP on CPU")."""

from __future__ import annotations

import pytest
import torch

from benchmarks.ddp import main, shard


def test_shard_gives_each_rank_its_contiguous_share_of_a_collated_batch():
    batch = {
        "images": torch.arange(4 * 3).view(4, 3),
        "boxes": [torch.zeros(n, 4) for n in range(4)],  # per-image lists are split too
        "has_boxes": torch.tensor([True, False, True, True]),
        "note": "kept as is",
    }
    first, second = shard(batch, 0, 2), shard(batch, 1, 2)
    assert torch.equal(first["images"], batch["images"][:2])
    assert torch.equal(second["images"], batch["images"][2:])
    assert [len(b) for b in first["boxes"]] == [0, 1] and [len(b) for b in second["boxes"]] == [
        2,
        3,
    ]
    assert second["has_boxes"].tolist() == [True, True]
    assert first["note"] == second["note"] == "kept as is"
    assert torch.equal(shard(batch, 0, 1)["images"], batch["images"])


def test_batch_and_threads_must_split_evenly_between_the_processes(capsys):
    for argv in (["--batch", "15"], ["--threads", "3"]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--processes", "2"])
        assert info.value.code == 2
        assert "divisible by --processes" in capsys.readouterr().err
