"""How many images of a dataset go to each split of ``visionkit split``
(:mod:`visionkit.data.split`): the counts of val and test from their fractions (each
fraction checked, naming the option at fault), a seeded assignment of ids, and the
stratified shares of a folder of classes."""

from __future__ import annotations

import random

from visionkit.choices import SPLITS
from visionkit.errors import ConfigError, DataError


def split_counts(n: int, val: float, test: float = 0.0) -> dict[str, int]:
    """How many of ``n`` items go to each split: ``round(n * fraction)`` for val and test, at
    least one each when its fraction is positive; train keeps the rest (at least one).

    >>> split_counts(160, 0.2)
    {'train': 128, 'val': 32, 'test': 0}
    >>> split_counts(10, 0.15, 0.1)
    {'train': 7, 'val': 2, 'test': 1}

    Raises:
        ConfigError: a fraction outside [0, 1), no val fraction, fractions that leave
            nothing to train on, or fewer items than splits.
    """
    problems = []
    if not 0 < val < 1:
        problems.append(
            f"--val {val:g}: the fraction of the images for val must be above 0 and below 1, "
            "e.g. --val 0.2 (a split makes a validation set; to train on every image, use the "
            "whole folder as data.train and leave data.val out)"
        )
    if not 0 <= test < 1:
        problems.append(
            f"--test {test:g}: the fraction of the images for test must be at least 0 (0: no "
            "test split) and below 1, e.g. --test 0.1"
        )
    if not problems and val + test >= 1:
        problems.append(
            f"--val {val:g} --test {test:g}: val and test take {val + test:g} of the images, "
            "leaving none for train; their sum must be below 1, e.g. --val 0.2 --test 0.1"
        )
    if problems:
        raise ConfigError(problems, options=True)
    counts = {s: max(1, round(n * f)) if f > 0 else 0 for s, f in (("val", val), ("test", test))}
    needed = 1 + sum(1 for c in counts.values() if c)
    if n < needed:
        raise DataError(f"{n} image(s) cannot be split into {needed} non-empty splits")
    while n - sum(counts.values()) < 1:  # rounding up took the last training item
        largest = max(counts, key=counts.get)
        counts[largest] -= 1
    return {"train": n - sum(counts.values()), **counts}


def assign(ids: list[str], val: float, test: float = 0.0, seed: int = 0) -> dict[str, list[str]]:
    """The ids of each split: the sorted ids shuffled with ``seed`` and cut by
    :func:`split_counts`; each split's ids are sorted again.

    >>> parts = assign([f"{i:03d}" for i in range(10)], val=0.2, seed=0)
    >>> [len(parts[s]) for s in ("train", "val", "test")]
    [8, 2, 0]
    >>> sorted(parts["train"] + parts["val"]) == [f"{i:03d}" for i in range(10)]
    True
    """
    counts = split_counts(len(ids), val, test)
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    out, start = {}, 0
    for name in SPLITS:
        out[name] = sorted(order[start : start + counts[name]])
        start += counts[name]
    return out


def class_shares(sizes: dict[str, int], val: float, test: float = 0.0) -> dict[str, dict[str, int]]:
    """How many images of each class go to each split (stratified): the totals of
    :func:`split_counts` over every image, shared out in proportion to the classes' sizes
    (largest remainders first), each class keeping one image for training where it can.

    >>> class_shares({"cat": 10, "dog": 5, "rare": 1}, 0.2)["dog"]
    {'train': 4, 'val': 1, 'test': 0}
    >>> sum(s["val"] for s in class_shares({str(c): 5 for c in range(100)}, 0.1).values())
    50
    """
    target = split_counts(sum(sizes.values()), val, test)
    shares = {c: {"train": n, "val": 0, "test": 0} for c, n in sizes.items()}
    for split, fraction in (("val", val), ("test", test)):
        exact = {c: n * fraction for c, n in sizes.items()}
        for c in sizes:
            shares[c][split] = min(int(exact[c]), max(shares[c]["train"] - 1, 0))
            shares[c]["train"] -= shares[c][split]
        order = sorted(sizes, key=lambda c: exact[c] - shares[c][split], reverse=True)
        missing = target[split] - sum(s[split] for s in shares.values())
        largest = sorted(sizes, key=lambda c: shares[c]["train"], reverse=True)
        for keep, classes in ((1, order), (0, largest)):  # one training image each, if it can
            for c in classes:
                if missing and shares[c]["train"] > keep:
                    shares[c][split] += 1
                    shares[c]["train"] -= 1
                    missing -= 1
    return shares
