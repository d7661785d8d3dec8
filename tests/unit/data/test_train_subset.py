"""Training-set shares (`search.train_fractions`): nested, exam-grouped, seeded subsets of the
training split."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.data.splits import exam_id, make_split, train_subset


def hc18_like_names(exams: int = 120, seed: int = 0) -> list[str]:
    """HC18-style names: exams with 1-3 images each (`010_HC.png`, `010_2HC.png`)."""
    rng = np.random.default_rng(seed)
    names = []
    for exam in range(1, exams + 1):
        names.append(f"{exam:03d}_HC.png")
        names += [f"{exam:03d}_{k}HC.png" for k in range(2, 2 + rng.integers(0, 3))]
    return names


def test_subsets_are_nested_exam_grouped_disjoint_from_val_and_test_and_seeded():
    names = hc18_like_names()
    split = make_split(names, "grouped", seed=0)
    train = split["train"]
    for seed in (0, 1, 7):
        small, mid, large = (train_subset(train, f, seed) for f in (0.1, 0.3, 0.5))
        assert set(small) <= set(mid) <= set(large) <= set(train)  # nested, training side only
        assert not set(large) & (set(split["val"]) | set(split["test"]))
        for subset, fraction in ((small, 0.1), (mid, 0.3), (large, 0.5)):
            # Whole exams: an exam is either wholly inside or wholly outside the subset.
            inside = {exam_id(n) for n in subset}
            assert {n for n in train if exam_id(n) in inside} == set(subset)
            # The share asked for, give or take the last exam's images.
            target = round(fraction * len(train))
            assert target <= len(subset) < target + 3
        # The same file list for the same seed, whatever order the names come in.
        assert train_subset(list(reversed(train)), 0.3, seed) == mid
    assert train_subset(train, 0.3, 0) != train_subset(train, 0.3, 1)
    assert train_subset(train, 1.0, 3) == sorted(train)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        train_subset(train, 0.0, 0)
