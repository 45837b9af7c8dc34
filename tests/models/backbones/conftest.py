"""Shared settings for the backbone tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_cpu_thread() -> Iterator[None]:
    """Run the tiny test tensors on one thread.

    On small CPU machines the first call of each conv shape on several OpenMP threads costs
    seconds (thread start-up and oneDNN primitive creation); at test sizes one thread is
    faster overall (measured on 2 cores: 87 s with 2 threads, 18 s with 1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
