"""Shared settings for the neck tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_cpu_thread() -> Iterator[None]:
    """Run the tiny test tensors on one thread (on small CPU machines, several OpenMP threads
    cost more in start-up than they save at these sizes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
