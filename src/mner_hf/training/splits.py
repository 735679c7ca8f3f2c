"""Seeded data selection: low-resource fractions and dev/test splits of a train-only dataset."""

from __future__ import annotations

import math

from datasets import Dataset, DatasetDict


def take_fraction(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """A seeded random subset with ``ceil(fraction * len)`` rows (at least 1), original order kept.

    The same ``seed`` always selects the same rows, and a smaller fraction selects a subset
    of the rows of a larger one (the permutation is fixed by the seed), so low-resource curves
    are nested.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = len(dataset)
    if fraction == 1.0 or n == 0:
        return dataset
    k = max(1, math.ceil(fraction * n))
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)[:k]
    return dataset.select(sorted(int(i) for i in order))


def ensure_splits(dataset: DatasetDict, ratios: list[float], seed: int) -> DatasetDict:
    """Return ``train`` / ``validation`` / ``test``; split ``train`` (seeded) when they are missing.

    Dev split names ``dev`` / ``valid`` / ``val`` are renamed to ``validation``. When only
    ``train`` exists, it is permuted with ``seed`` and cut by ``ratios`` (train, dev, test),
    each part getting at least one post.
    """
    renamed = {}
    for name, split in dataset.items():
        key = "validation" if name in ("dev", "valid", "val") else name
        renamed[key] = split
    if "validation" in renamed and "test" in renamed:
        return DatasetDict(renamed)
    if "train" not in renamed:
        raise ValueError(f"dataset has splits {sorted(dataset)}; need at least 'train'")
    train = renamed["train"]
    n = len(train)
    if n < 3:
        raise ValueError(f"cannot make train/validation/test from {n} posts")
    import numpy as np

    order = [int(i) for i in np.random.default_rng(seed).permutation(n)]
    n_dev = max(1, round(ratios[1] * n)) if "validation" not in renamed else 0
    n_test = max(1, round(ratios[2] * n)) if "test" not in renamed else 0
    n_train = n - n_dev - n_test
    if n_train < 1:
        raise ValueError(f"split ratios {ratios} leave no training posts out of {n}")
    out = {"train": train.select(sorted(order[:n_train]))}
    out["validation"] = renamed.get("validation") or train.select(sorted(order[n_train : n_train + n_dev]))
    out["test"] = renamed.get("test") or train.select(sorted(order[n_train + n_dev :]))
    return DatasetDict(out)
