"""The P x K identity sampler: every batch P identities x K images, order from (seed, epoch)."""

from __future__ import annotations

from collections import Counter

import pytest

from visionkit.engine.identity_sampling import IdentityBatchSampler
from visionkit.errors import ConfigError

LABELS = [i // 6 for i in range(60)]  # 10 identities x 6 images


def batches(sampler, size):
    order = [int(i) for i in sampler]
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_every_batch_holds_p_identities_of_k_images():
    sampler = IdentityBatchSampler(LABELS, seed=0, p=4, k=3, identities=LABELS)
    assert len(sampler) == 60
    for batch in batches(sampler, 12):
        counts = Counter(LABELS[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {3}
        assert len(set(batch)) == 12  # 6 images per identity: no repeat within a batch


def test_the_order_is_a_function_of_seed_and_epoch():
    a = IdentityBatchSampler(LABELS, seed=3, p=4, k=3, identities=LABELS)
    b = IdentityBatchSampler(LABELS, seed=3, p=4, k=3, identities=LABELS)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.resume_at(0, 24)  # resumed after two batches of epoch 0: the rest of that epoch
    assert [int(i) for i in b] == [int(i) for i in first[24:]]


def test_ranks_get_their_own_p_by_k_batches():
    ranks = [
        IdentityBatchSampler(LABELS, seed=0, rank=r, world_size=2, p=4, k=3, identities=LABELS)
        for r in range(2)
    ]
    orders = [[int(i) for i in s] for s in ranks]
    assert len(orders[0]) == len(orders[1]) == 24
    for order in orders:
        for batch in (order[:12], order[12:]):
            assert sorted(Counter(LABELS[i] for i in batch).values()) == [3] * 4


def test_too_few_identities_is_a_config_error():
    with pytest.raises(ConfigError, match="data.sampler.p: 12 identities per batch"):
        IdentityBatchSampler(LABELS, seed=0, p=12, k=2, identities=LABELS)
