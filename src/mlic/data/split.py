"""Deterministic multi-label train/val/test split by iterative stratification.

A plain random split of multi-label data easily leaves a rare label with no validation or test
image, and then its AP is undefined and the graph statistics are skewed. Iterative stratification
(Sechidis, Tsoumakas & Vlahavas, ECML-PKDD 2011 — the field's standard, also behind
scikit-multilearn's `IterativeStratification`) hands out the rarest label first, each of its
images to the split that still wants that label most. A short repair pass then makes sure every
label with enough images is present in every (non-empty) split.

Everything is seeded: the same label lists, fractions and seed give the same split on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlic.config import SplitConfig

#: Order of the splits everywhere (files, summaries, metrics).
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def seeded_rng(seed: int, *stream: int) -> np.random.Generator:
    """A generator for (seed, stream...): independent streams, and negative seeds allowed."""
    return np.random.default_rng([seed % 2**64, *stream])


def split_fractions(config: SplitConfig) -> dict[str, float]:
    return {"train": 1.0 - config.val - config.test, "val": config.val, "test": config.test}


def stratified_split(
    label_sets: Sequence[Sequence[int]], num_classes: int, fractions: dict[str, float], seed: int
) -> dict[str, list[int]]:
    """Assign every item (by position) to a split; returns sorted positions per split name."""
    names = list(fractions)
    ratios = np.array([fractions[name] for name in names], dtype=np.float64)
    rng = seeded_rng(seed)
    order = rng.permutation(len(label_sets))
    labels_of = [np.unique(np.asarray(label_sets[i], dtype=np.int64)) for i in range(len(label_sets))]

    label_totals = np.zeros(num_classes, dtype=np.int64)
    items_of_label: list[list[int]] = [[] for _ in range(num_classes)]
    for item in order:
        for label in labels_of[item]:
            label_totals[label] += 1
            items_of_label[label].append(int(item))

    wanted_items = ratios * len(label_sets)
    wanted_per_label = np.outer(ratios, label_totals).astype(np.float64)
    unassigned_per_label = label_totals.copy()
    assignment = np.full(len(label_sets), -1, dtype=np.int64)

    def choose(candidates: np.ndarray) -> int:
        """Among tied splits prefer the one that wants the most items overall, then at random."""
        best = candidates[wanted_items[candidates] == wanted_items[candidates].max()]
        return int(best[0] if len(best) == 1 else rng.choice(best))

    while (unassigned_per_label > 0).any():
        rarest = int(np.argmin(np.where(unassigned_per_label > 0, unassigned_per_label, np.iinfo(np.int64).max)))
        for item in items_of_label[rarest]:
            if assignment[item] >= 0:
                continue
            wants = wanted_per_label[:, rarest]
            split = choose(np.flatnonzero(wants == wants.max()))
            assignment[item] = split
            wanted_per_label[split, labels_of[item]] -= 1
            unassigned_per_label[labels_of[item]] -= 1
            wanted_items[split] -= 1

    for item in order:  # images without labels: wherever items are still wanted
        if assignment[item] < 0:
            split = choose(np.arange(len(names)))
            assignment[item] = split
            wanted_items[split] -= 1

    _give_every_split_every_label(assignment, labels_of, num_classes, ratios, order)
    return {name: sorted(np.flatnonzero(assignment == index).tolist()) for index, name in enumerate(names)}


def _give_every_split_every_label(
    assignment: np.ndarray, labels_of: list[np.ndarray], num_classes: int, ratios: np.ndarray, order: np.ndarray
) -> None:
    """Move single items so a label with enough images shows up in each split that takes images.

    The donor is the split holding the most images of the label (it keeps at least one), and the
    item moved is the one whose other labels the donor can spare best, so no new gap opens.
    """
    live_splits = np.flatnonzero(ratios > 0)
    counts = np.zeros((len(ratios), num_classes), dtype=np.int64)
    for item, split in enumerate(assignment):
        counts[split, labels_of[item]] += 1
    for label in range(num_classes):
        if counts[live_splits, label].sum() < len(live_splits):
            continue
        for split in live_splits:
            if counts[split, label] > 0:
                continue
            donor = int(live_splits[np.argmax(counts[live_splits, label])])
            candidates = [int(i) for i in order if assignment[i] == donor and label in labels_of[i]]
            item = max(candidates, key=lambda i: int(counts[donor, labels_of[i]].min()))
            assignment[item] = split
            counts[donor, labels_of[item]] -= 1
            counts[split, labels_of[item]] += 1


def carve_val(
    label_sets: Sequence[Sequence[int]], num_classes: int, fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """(train, val) positions: a stratified `fraction` of a published training set held out for validation.

    The published protocols (COCO 2014 train/val, VOC 2007 trainval/test) fix the test set only;
    model selection needs a validation set that never touches it, so it comes out of train, seeded.
    """
    if fraction == 0:
        return list(range(len(label_sets))), []
    positions = stratified_split(label_sets, num_classes, {"train": 1.0 - fraction, "val": fraction}, seed)
    return positions["train"], positions["val"]


def cap_per_label(items: Sequence[int], label_sets: Sequence[Sequence[int]], cap: int, seed: int) -> list[int]:
    """The largest uniform random subset of `items` in which no label occurs more than `cap` times.

    Taken as a prefix of a seeded permutation rather than by skipping images that would overflow
    a label: skipping would favour images without frequent labels and bend the co-occurrence
    statistics the graph models learn from; a uniform subset keeps them.
    """
    counts: dict[int, int] = {}
    kept: list[int] = []
    for position in seeded_rng(seed, 1).permutation(len(items)):
        item = items[int(position)]
        labels = set(label_sets[item])
        if any(counts.get(label, 0) >= cap for label in labels):
            break
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        kept.append(item)
    return sorted(kept)
