"""Iterative stratification: a deterministic partition that keeps every label in every split."""

from __future__ import annotations

import numpy as np
import pytest

from mlic.data.split import cap_per_label, stratified_split

FRACTIONS = {"train": 0.65, "val": 0.15, "test": 0.2}


def _label_lists(count: int, seed: int = 0) -> list[list[int]]:
    """Frequent labels 0-5 plus rare ones: labels 6 and 7 on exactly 3 images, label 8 on 2."""
    rng = np.random.default_rng(seed)
    lists = [sorted(set(rng.choice(6, size=rng.integers(1, 4)).tolist())) for _ in range(count)]
    for label, items in {6: (5, 50, 90), 7: (11, 12, 13), 8: (20, 21)}.items():
        for item in items:
            lists[item] = sorted(set(lists[item]) | {label})
    return lists


def test_split_is_a_deterministic_partition_with_the_requested_sizes() -> None:
    lists = _label_lists(200)
    split = stratified_split(lists, 9, FRACTIONS, seed=3)
    assert split == stratified_split(lists, 9, FRACTIONS, seed=3)
    assert split != stratified_split(lists, 9, FRACTIONS, seed=4)
    members = [item for items in split.values() for item in items]
    assert sorted(members) == list(range(200))
    for name, fraction in FRACTIONS.items():
        assert len(split[name]) == pytest.approx(200 * fraction, abs=6)


def test_every_label_with_enough_images_is_in_every_split() -> None:
    lists = _label_lists(200)
    split = stratified_split(lists, 9, FRACTIONS, seed=0)
    for label in range(8):  # 8 has only two images: it cannot be in three splits
        for name, items in split.items():
            assert any(label in lists[i] for i in items), f"label {label} missing from {name}"
    assert sum(any(8 in lists[i] for i in items) for items in split.values()) == 2


def test_per_label_proportions_follow_the_fractions() -> None:
    lists = _label_lists(400, seed=1)
    split = stratified_split(lists, 9, FRACTIONS, seed=0)
    for label in range(6):
        total = sum(label in labels for labels in lists)
        in_test = sum(label in lists[i] for i in split["test"])
        assert in_test / total == pytest.approx(FRACTIONS["test"], abs=0.05)


def test_unlabelled_items_and_an_empty_val_fraction() -> None:
    lists = [[0], [], [1], [], [0, 1], [], [0], [1]] * 5
    split = stratified_split(lists, 2, {"train": 0.8, "val": 0.0, "test": 0.2}, seed=0)
    assert split["val"] == []
    assert sorted(split["train"] + split["test"]) == list(range(len(lists)))
    assert any(not lists[i] for i in split["test"]) and any(not lists[i] for i in split["train"])


def test_cap_per_label_bounds_every_label_with_a_uniform_subset() -> None:
    lists = _label_lists(300)
    items = list(range(0, 300, 2))
    kept = cap_per_label(items, lists, cap=20, seed=0)
    assert kept == cap_per_label(items, lists, cap=20, seed=0)
    assert set(kept) <= set(items)
    counts = np.bincount([label for i in kept for label in lists[i]], minlength=9)
    assert counts.max() <= 20
    assert counts.max() >= 15  # it stops at the first overflow, not long before
    assert cap_per_label(items, lists, cap=10_000, seed=0) == items
