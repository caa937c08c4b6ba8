"""Multi-label metrics as reported in the ML-GCN / ASL papers' tables (all in percent).

- mAP: mean over classes of non-interpolated AP: the precision at each distinct score threshold,
  weighted by the recall it adds (scikit-learn's `average_precision_score`). Tied scores form one
  threshold, so AP does not depend on the order of the images. Classes without a positive are
  excluded and named in a warning.
- CP/CR/CF1: per-class precision/recall averaged over classes, CF1 from the two averages.
- OP/OR/OF1: precision/recall over all (image, label) pairs.
- top-k variants: a label counts as predicted only if it is among the image's k highest scores
  *and* above its threshold (the ML-GCN evaluation code's convention).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def average_precision_per_class(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AP of each class `[C]`; NaN where the class has no positive.

    A threshold cannot split tied scores, so precision is taken only at the last image of each run
    of equal scores (in descending order) and weighted by the positives the whole run adds. Both
    depend only on the sorted scores and on counts above each threshold, never on where tied images
    sit in the ranking: permuting the images leaves every AP bit for bit the same, and quantised
    scores (bf16, rounded) get the same AP as scikit-learn rather than an order-dependent one.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0
    order = np.argsort(-scores, axis=0, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=0)  # [N, C] descending
    true_pos = np.cumsum(np.take_along_axis(targets, order, axis=0), axis=0, dtype=np.float64)
    ranks = np.arange(1, scores.shape[0] + 1, dtype=np.float64)[:, None]
    # the last image of each run of equal scores: the only places a threshold can cut
    run_end = np.ones_like(ranked, dtype=bool)
    run_end[:-1] = ranked[1:] != ranked[:-1]
    true_pos_at_ends = np.where(run_end, true_pos, 0.0)
    # true_pos never falls, so the running max of earlier run ends is the count at the previous cut
    previous_cut = np.zeros_like(true_pos)
    previous_cut[1:] = np.maximum.accumulate(true_pos_at_ends, axis=0)[:-1]
    added = np.where(run_end, true_pos - previous_cut, 0.0)
    positives = targets.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, (added * true_pos / ranks).sum(axis=0) / positives, np.nan)


def mean_average_precision(scores: np.ndarray, targets: np.ndarray, label_names: list[str] | None = None) -> float:
    """mAP in percent over the classes that have positives."""
    per_class = average_precision_per_class(scores, targets)
    missing = np.isnan(per_class)
    if missing.any():
        names = [label_names[i] if label_names else str(i) for i in np.flatnonzero(missing)]
        log.warning("classes without positives excluded from mAP: %s", ", ".join(names))
    if missing.all():
        return float("nan")
    return float(np.nanmean(per_class) * 100.0)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _precision_recall_scores(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    true_pos = (predicted & targets).sum(axis=0).astype(np.float64)
    predicted_pos = predicted.sum(axis=0).astype(np.float64)
    actual_pos = targets.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class_precision = np.where(predicted_pos > 0, true_pos / predicted_pos, 0.0)
        per_class_recall = np.where(actual_pos > 0, true_pos / actual_pos, 0.0)
    cp, cr = float(per_class_precision.mean()), float(per_class_recall.mean())
    op = float(true_pos.sum() / predicted_pos.sum()) if predicted_pos.sum() > 0 else 0.0
    orec = float(true_pos.sum() / actual_pos.sum()) if actual_pos.sum() > 0 else 0.0
    return {
        "CP": cp * 100,
        "CR": cr * 100,
        "CF1": _f1(cp, cr) * 100,
        "OP": op * 100,
        "OR": orec * 100,
        "OF1": _f1(op, orec) * 100,
    }


def threshold_predictions(probabilities: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    return np.asarray(probabilities) >= np.asarray(thresholds)


def top_k_mask(probabilities: np.ndarray, k: int) -> np.ndarray:
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(probabilities, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask


@dataclass(frozen=True)
class MultiLabelReport:
    overall: dict[str, float]
    per_class_ap: np.ndarray  # percent, NaN for classes without positives


def evaluate_scores(
    probabilities: np.ndarray,
    targets: np.ndarray,
    thresholds: np.ndarray | float = 0.5,
    top_k: int = 3,
    label_names: list[str] | None = None,
) -> MultiLabelReport:
    """All figures for one model: mAP, CP..OF1 at the thresholds, and the top-k variants."""
    targets = np.asarray(targets) > 0
    predicted = threshold_predictions(probabilities, thresholds)
    overall = {"mAP": mean_average_precision(probabilities, targets, label_names)}
    overall.update(_precision_recall_scores(predicted, targets))
    top = _precision_recall_scores(predicted & top_k_mask(probabilities, top_k), targets)
    overall.update({f"{name}_top{top_k}": value for name, value in top.items()})
    return MultiLabelReport(overall=overall, per_class_ap=average_precision_per_class(probabilities, targets) * 100)


def best_f1_thresholds(probabilities: np.ndarray, targets: np.ndarray, default: float) -> np.ndarray:
    """Per-class threshold maximising that class's F1 on held-out data (default where no positive).

    Candidates are the observed scores, so the search is exact and cheap (one sort per class).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets) > 0
    thresholds = np.full(probabilities.shape[1], default, dtype=np.float64)
    for label in range(probabilities.shape[1]):
        positives = targets[:, label].sum()
        if positives == 0:
            continue
        order = np.argsort(-probabilities[:, label], kind="stable")
        ranked_scores = probabilities[order, label]
        true_pos = np.cumsum(targets[order, label])
        predicted = np.arange(1, len(order) + 1)
        f1 = 2 * true_pos / (predicted + positives)
        # only cut between distinct scores: a threshold cannot split tied scores
        distinct = np.append(ranked_scores[1:] < ranked_scores[:-1], True)
        f1 = np.where(distinct, f1, -1)
        best = int(np.argmax(f1))
        thresholds[label] = float(ranked_scores[best])
    return thresholds
