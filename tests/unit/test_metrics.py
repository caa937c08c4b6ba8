import numpy as np
import pytest
import torch
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


def _sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.array([average_precision_score(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])


def _tied_scores(kind: str, rng: np.random.Generator, targets: np.ndarray) -> np.ndarray:
    raw = np.clip(0.3 * targets + rng.random(targets.shape) * 0.8, 0, 1)
    if kind == "one decimal":
        return np.round(raw, 1)
    # bf16 keeps 8 significant bits: in [0.5, 1] its steps are 1/256, so 200 images must share scores
    return torch.from_numpy(0.5 + 0.5 * raw).to(torch.bfloat16).double().numpy()


@pytest.mark.parametrize("kind", ["one decimal", "bf16"])
def test_ap_under_ties_equals_sklearn_per_class(kind):
    rng = np.random.default_rng(3)
    targets = (rng.random((200, 10)) < 0.3).astype(int)
    scores = _tied_scores(kind, rng, targets)
    assert len(np.unique(scores[:, 0])) < 150  # many ties, or the test would not test them
    np.testing.assert_allclose(
        average_precision_per_class(scores, targets), _sklearn_ap(scores, targets), rtol=0, atol=1e-12
    )


def test_ap_of_random_one_decimal_scores_equals_sklearn():
    rng = np.random.default_rng(0)
    scores, targets = np.round(rng.random((200, 10)), 1), (rng.random((200, 10)) < 0.3).astype(int)
    np.testing.assert_allclose(
        average_precision_per_class(scores, targets), _sklearn_ap(scores, targets), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("kind", ["one decimal", "bf16"])
def test_permuting_the_images_leaves_every_ap_exactly_unchanged(kind):
    rng = np.random.default_rng(5)
    targets = (rng.random((200, 10)) < 0.3).astype(int)
    scores = _tied_scores(kind, rng, targets)
    before = average_precision_per_class(scores, targets)
    for _ in range(5):
        order = rng.permutation(len(scores))
        np.testing.assert_array_equal(average_precision_per_class(scores[order], targets[order]), before)


def test_all_tied_scores_give_the_positive_rate():
    """One threshold only: precision there is the share of positives, whatever the order."""
    targets = np.array([[1], [0], [0], [1], [0]])
    assert average_precision_per_class(np.full((5, 1), 0.5), targets)[0] == pytest.approx(2 / 5)


def test_ap_of_a_class_without_positives_is_nan_beside_tied_scores():
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    ap = average_precision_per_class(np.array([[0.5, 0.2], [0.5, 0.2], [0.1, 0.2]]), targets)
    assert np.isnan(ap[1]) and ap[0] == pytest.approx(average_precision_score(targets[:, 0], [0.5, 0.5, 0.1]))


def _per_arch(**maps: tuple[float, float]) -> dict[str, dict[str, float]]:
    """{arch: (val mAP, test mAP)} as evaluate writes them."""
    return {arch: {"val_mAP": val, "mAP": test} for arch, (val, test) in maps.items()}


def test_gate_chooses_on_val_and_gates_on_test():
    per_arch = _per_arch(baseline=(60.0, 58.0), mlgcn=(71.5, 70.0), msrn=(float("nan"), float("nan")))
    decision = decide(per_arch, min_map=70)
    assert (decision.best_arch, decision.chosen_by, decision.chosen_map, decision.test_map) == (
        "mlgcn",
        "val",
        71.5,
        70.0,
    )
    assert decision.passed
    assert not decide(per_arch, min_map=70.01).passed


def test_gate_chooses_the_val_winner_even_when_another_wins_on_test():
    per_arch = _per_arch(baseline=(62.0, 75.0), msrn=(71.2, 65.0))
    decision = decide(per_arch, min_map=70)
    assert (decision.best_arch, decision.chosen_map, decision.test_map) == ("msrn", 71.2, 65.0)
    # baseline's test mAP clears the floor, but it was not chosen: the chosen model's test mAP gates
    assert not decision.passed


def test_gate_ties_go_to_the_architecture_listed_first():
    per_arch = _per_arch(mlgcn=(70.0, 60.0), baseline=(70.0, 65.0), msrn=(69.0, 80.0))
    assert decide(per_arch, min_map=0).best_arch == "mlgcn"
    assert decide(dict(reversed(per_arch.items())), min_map=0).best_arch == "baseline"


def test_gate_falls_back_to_test_map_without_a_val_map(caplog):
    nan = float("nan")
    decision = decide(_per_arch(baseline=(nan, 60.0), mlgcn=(nan, 71.5)), min_map=70)
    assert (decision.best_arch, decision.chosen_by, decision.chosen_map, decision.test_map) == (
        "mlgcn",
        "test",
        71.5,
        71.5,
    )
    assert decision.passed
    assert "choosing by test mAP" in caplog.text


def test_gate_fails_when_no_architecture_has_any_map():
    nan = float("nan")
    decision = decide(_per_arch(baseline=(nan, nan), mlgcn=(nan, nan)), min_map=0)
    assert decision.best_arch == "baseline" and not decision.passed
