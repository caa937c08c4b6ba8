"""Label co-occurrence statistics and the ML-GCN static graph (Chen et al., CVPR 2019, §3.3)."""

from __future__ import annotations

import numpy as np


def cooccurrence_counts(label_lists: list[list[int]], num_classes: int) -> np.ndarray:
    """`counts[i, j]` = number of images holding both i and j; the diagonal holds label counts."""
    targets = np.zeros((len(label_lists), num_classes), dtype=np.int64)
    for row, labels in enumerate(label_lists):
        targets[row, labels] = 1
    return targets.T @ targets


def conditional_probabilities(counts: np.ndarray) -> np.ndarray:
    """`P[i, j] = P(j | i) = count(i, j) / count(i)`, zero for labels never seen, zero diagonal."""
    label_counts = np.diag(counts).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        probabilities = np.where(label_counts[:, None] > 0, counts / label_counts[:, None], 0.0)
    np.fill_diagonal(probabilities, 0.0)
    return probabilities


def reweighted_adjacency(counts: np.ndarray, threshold: float, reweight: float) -> np.ndarray:
    """ML-GCN's graph: binarise P at τ (drops noisy rare edges), spread weight p over each label's
    neighbours and keep 1-p on itself (fights over-smoothing), then `D^-1/2 A D^-1/2`.

    A label with no neighbour above τ keeps only its self-loop (weight 1).
    """
    binary = (conditional_probabilities(counts) >= threshold).astype(np.float64)
    neighbour_sums = binary.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(neighbour_sums > 0, binary * reweight / neighbour_sums, 0.0)
    self_weight = np.where(neighbour_sums[:, 0] > 0, 1.0 - reweight, 1.0)
    adjacency = spread + np.diag(self_weight)
    return symmetric_normalise(adjacency).astype(np.float32)


def symmetric_normalise(adjacency: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """`D^-1/2 A D^-1/2`: keeps repeated propagation from growing or shrinking features."""
    degree = np.maximum(np.asarray(adjacency, dtype=np.float64).sum(axis=-1), eps)
    inv_sqrt = degree**-0.5
    return inv_sqrt[..., :, None] * adjacency * inv_sqrt[..., None, :]
