import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

from mlic.evaluation.gate import decide
from mlic.evaluation.metrics import (
    average_precision_per_class,
    best_f1_thresholds,
    evaluate_scores,
    mean_average_precision,
)


@pytest.fixture
def scores_and_targets():
    rng = np.random.default_rng(7)
    targets = (rng.random((300, 9)) < 0.25).astype(int)
    scores = np.clip(0.35 * targets + rng.random((300, 9)) * 0.8, 0, 1)  # continuous: no ties
    return scores, targets


def test_map_equals_sklearn_macro_ap(scores_and_targets):
    scores, targets = scores_and_targets
    expected = average_precision_score(targets, scores, average="macro") * 100
    assert mean_average_precision(scores, targets) == pytest.approx(expected, abs=1e-9)


def test_perfect_ranking_has_ap_100_and_reversed_is_low():
    targets = np.array([[1], [1], [0], [0]])
    assert average_precision_per_class(np.array([[0.9], [0.8], [0.2], [0.1]]), targets)[0] == 1.0
    # positives ranked 3rd and 4th: (1/3 + 2/4) / 2
    assert average_precision_per_class(np.array([[0.1], [0.2], [0.8], [0.9]]), targets)[0] == pytest.approx(5 / 12)


def test_classes_without_positives_are_excluded_and_named(caplog, scores_and_targets):
    scores, targets = scores_and_targets
    targets = targets.copy()
    targets[:, 4] = 0
    names = [f"l{i}" for i in range(9)]
    value = mean_average_precision(scores, targets, names)
    kept = [c for c in range(9) if c != 4]
    assert value == pytest.approx(average_precision_score(targets[:, kept], scores[:, kept], average="macro") * 100)
    assert "l4" in caplog.text


def test_overall_and_per_class_scores_match_sklearn(scores_and_targets):
    scores, targets = scores_and_targets
    report = evaluate_scores(scores, targets, thresholds=0.5, top_k=3).overall
    predicted = (scores >= 0.5).astype(int)
    assert report["OP"] == pytest.approx(precision_score(targets, predicted, average="micro") * 100)
    assert report["OR"] == pytest.approx(recall_score(targets, predicted, average="micro") * 100)
    assert report["OF1"] == pytest.approx(f1_score(targets, predicted, average="micro") * 100)
    cp = precision_score(targets, predicted, average="macro", zero_division=0) * 100
    cr = recall_score(targets, predicted, average="macro", zero_division=0) * 100
    assert report["CP"] == pytest.approx(cp)
    assert report["CF1"] == pytest.approx(2 * cp * cr / (cp + cr))


def test_top_k_predicts_at_most_k_labels_per_image(scores_and_targets):
    scores, targets = scores_and_targets
    low = evaluate_scores(scores, targets, thresholds=0.0, top_k=1).overall
    # with threshold 0 every label is predicted unless top-k cuts: top-1 → one label per image
    assert low["OP_top1"] == pytest.approx(100 * targets[np.arange(300), scores.argmax(1)].mean())


def test_tuned_thresholds_do_not_lower_f1_on_the_data_they_were_tuned_on(scores_and_targets):
    scores, targets = scores_and_targets
    thresholds = best_f1_thresholds(scores, targets, default=0.5)
    for label in range(targets.shape[1]):
        tuned = f1_score(targets[:, label], scores[:, label] >= thresholds[label])
        fixed = f1_score(targets[:, label], scores[:, label] >= 0.5, zero_division=0)
        assert tuned >= fixed - 1e-12


def test_gate_picks_highest_map_and_fails_below_floor():
    per_arch = {"baseline": {"mAP": 60.0}, "mlgcn": {"mAP": 71.5}, "msrn": {"mAP": float("nan")}}
    decision = decide(per_arch, min_map=70)
    assert (decision.best_arch, decision.passed) == ("mlgcn", True)
    assert not decide(per_arch, min_map=80).passed
