"""The label-attention checks the quality bench reports (query collapse, sharpness): measured on
real models and on attention layers fed queries whose geometry is known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph, synthetic_label_graph
from mlic.knobs import Similarity
from mlic.models import create_model
from mlic.models.diagnostics import (
    ImageBoxes,
    LabelAttentionProbe,
    averaged_query_probabilities,
    eval_probabilities,
    mean_normalised_entropy,
    mean_offdiagonal_cosine,
    pointing_game,
    pointing_hit,
    probe_label_attention,
    queries_replaced,
)
from mlic.models.layers import (
    LabelGuidedAttention,
)

NUM_CLASSES = 6


class FixedQueries(nn.Module):
    """Label-guided attention asked with given queries: a model whose answer we know."""

    def __init__(self, queries: Tensor, similarity: Similarity = "dot") -> None:
        super().__init__()
        self.register_buffer("queries", queries)
        self.attend = LabelGuidedAttention(similarity)

    def forward(self, images: Tensor) -> Tensor:
        return self.attend(self.queries, images).sum(-1)


IMAGES = torch.randn(2, 4, 3, 3)


@pytest.fixture(scope="module")
def graph() -> LabelGraph:
    return synthetic_label_graph(NUM_CLASSES, embedding_dim=16, num_images=200)


def probe(model: nn.Module, images: Tensor = IMAGES) -> LabelAttentionProbe:
    measured = probe_label_attention(model, images)
    assert measured is not None
    return measured


def test_identical_queries_read_as_collapsed() -> None:
    assert probe(FixedQueries(torch.ones(5, 4) * torch.arange(1, 6)[:, None])).query_cosine == pytest.approx(1.0)


def test_orthogonal_queries_read_as_distinct() -> None:
    assert probe(FixedQueries(torch.eye(4))).query_cosine == pytest.approx(0.0, abs=1e-6)


def test_entropy_runs_from_one_location_to_all() -> None:
    assert mean_normalised_entropy(torch.full((2, 3, 9), 1 / 9)) == pytest.approx(1.0)
    assert mean_normalised_entropy(torch.eye(9)[:3]) == pytest.approx(0.0, abs=1e-6)


def test_a_growing_dot_product_query_locks_onto_one_location_and_a_cosine_one_does_not() -> None:
    """The MSRN/SGFN failure the bench measures: the same query direction, 100 times longer, turns
    dot-product attention one-hot; with the cosine knob the weights do not change."""
    query = torch.randn(3, 4)
    dot_short, dot_long = (probe(FixedQueries(scale * query)).entropy for scale in (0.1, 100.0))
    assert dot_short > 0.9 and dot_long < 0.2
    cosine_short, cosine_long = (probe(FixedQueries(scale * query, "cosine")).entropy for scale in (0.1, 100.0))
    assert cosine_short == pytest.approx(cosine_long)


def test_per_image_queries_are_averaged_over_the_batch() -> None:
    per_image = torch.stack([torch.eye(3), torch.ones(3, 3)])  # one distinct sample, one collapsed
    assert mean_offdiagonal_cosine(per_image) == pytest.approx(0.5)


def test_model_without_label_guided_attention_has_no_figure(graph: LabelGraph) -> None:
    baseline = create_model("baseline", NUM_CLASSES, graph, backbone="resnet18")
    assert probe_label_attention(baseline, torch.randn(1, 3, 64, 64)) is None


@pytest.mark.parametrize("arch", ["msrn", "mgsgn", "sgfn", "cmasge"])
def test_every_research_model_is_measured_and_left_as_it_was(arch: str, graph: LabelGraph) -> None:
    model = create_model(arch, NUM_CLASSES, graph, backbone="resnet18").train()
    measured = probe(model, torch.randn(2, 3, 64, 64))
    assert -1.0 <= measured.query_cosine <= 1.0 and 0.0 <= measured.entropy <= 1.0
    assert model.training  # the probe restores the mode it found
    assert not any(module._forward_pre_hooks for module in model.modules())  # and removes its hooks


# --- the pointing game ---------------------------------------------------------------------


def one_hot_map(row: int, col: int, side: int = 4) -> Tensor:
    attention_map = torch.zeros(side, side)
    attention_map[row, col] = 1.0
    return attention_map


@pytest.mark.parametrize(
    ("peak", "box", "hit"),
    [
        ((1, 1), [25.0, 25.0, 20.0, 20.0], True),  # the peak cell lies in the box
        ((0, 0), [25.0, 25.0, 20.0, 20.0], True),  # one cell off: inside the one-cell dilation
        ((3, 3), [0.0, 0.0, 20.0, 20.0], False),  # two cells off
        ((3, 0), [0.0, 0.0, 100.0, 20.0], False),  # right column, wrong row
        ((1, 3), [0.0, 0.0, 100.0, 20.0], True),  # the box spans the width; row 1 is its dilation
    ],
)
def test_pointing_hit_counts_the_peak_inside_a_box_grown_by_one_cell(
    peak: tuple[int, int], box: list[float], hit: bool
) -> None:
    """A 100×100 image over a 4×4 map: each cell is 25 pixels."""
    assert pointing_hit(one_hot_map(*peak), [box], width=100, height=100) is hit


def test_pointing_hit_scales_boxes_from_the_stored_image_size() -> None:
    """Boxes are in the stored image's pixels (here 400×100), the map covers the resized square."""
    assert pointing_hit(one_hot_map(2, 3), [[350.0, 60.0, 40.0, 30.0]], width=400, height=100, dilation=0)
    assert not pointing_hit(one_hot_map(2, 0), [[350.0, 60.0, 40.0, 30.0]], width=400, height=100, dilation=0)
    assert pointing_hit(
        one_hot_map(1, 1), [[0.0, 0.0, 1.0, 1.0], [30.0, 30.0, 10.0, 10.0]], width=100, height=100, dilation=0
    )


class LooksAt(nn.Module):
    """Label-guided attention whose keys are one-hot codes of the 16 locations of a 4×4 map:
    label k's query picks location `targets[k]`, so every label looks exactly where we say."""

    def __init__(self, targets: list[int]) -> None:
        super().__init__()
        self.register_buffer("queries", 50.0 * torch.eye(16)[targets])
        self.attend = LabelGuidedAttention("dot")

    def forward(self, images: Tensor) -> Tensor:
        keys = torch.eye(16).view(1, 16, 4, 4).expand(images.shape[0], -1, -1, -1)
        return self.attend(self.queries, keys).sum(-1)


def test_pointing_game_scores_labels_on_their_own_boxes_against_the_shared_saliency() -> None:
    """Labels 0 and 1 find their objects in opposite corners, label 2 looks at the top-right
    corner where it has none. The shared saliency (the mean of the three maps) ties between
    those three corners, and its arg-max, the first, is label 0's corner for every label."""
    image = ImageBoxes(
        width=100,
        height=100,
        boxes={0: [[0.0, 0.0, 20.0, 20.0]], 1: [[80.0, 80.0, 20.0, 20.0]], 2: [[0.0, 80.0, 20.0, 20.0]]},
    )
    game = pointing_game(LooksAt(targets=[0, 15, 3]), torch.zeros(2, 3, 8, 8), [image, image], num_classes=3)
    assert game is not None and game.pairs == 6
    assert game.per_stage == pytest.approx([200 / 3])
    assert game.shared_saliency == pytest.approx([100 / 3])


def test_pointing_game_needs_label_attention_and_boxes() -> None:
    image = ImageBoxes(width=100, height=100, boxes={0: [[0.0, 0.0, 20.0, 20.0]]})
    assert pointing_game(nn.Conv2d(3, 1, 1), torch.zeros(1, 3, 8, 8), [image], num_classes=1) is None
    unboxed = ImageBoxes(width=100, height=100, boxes={})
    assert pointing_game(LooksAt(targets=[0]), torch.zeros(1, 3, 8, 8), [unboxed], num_classes=1) is None


@pytest.mark.parametrize(("arch", "stages"), [("msrn", 3), ("msshared", 3), ("cmasge", 1), ("mgsgn", 1)])
def test_pointing_game_reads_every_stage_of_real_models(arch: str, stages: int, graph: LabelGraph) -> None:
    """One score per attention call; a single shared query is its own shared saliency."""
    model = create_model(arch, NUM_CLASSES, graph, backbone="resnet18")
    image = ImageBoxes(width=64, height=64, boxes={0: [[0.0, 0.0, 30.0, 30.0]], 3: [[40.0, 40.0, 20.0, 20.0]]})
    game = pointing_game(model, torch.randn(2, 3, 64, 64), [image, image], NUM_CLASSES)
    assert game is not None and len(game.per_stage) == stages and game.pairs == 4
    if arch == "msshared":
        assert game.per_stage == game.shared_saliency


# --- what the differences between the queries are worth ----------------------------------------


def test_averaged_queries_answer_as_the_mean_query_asked_by_every_label() -> None:
    queries = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    model = FixedQueries(queries)
    averaged = averaged_query_probabilities(model, IMAGES)
    same_question = eval_probabilities(FixedQueries(queries.mean(0, keepdim=True).expand(5, -1)), IMAGES)
    assert averaged is not None and averaged.shape == (2, 5)
    torch.testing.assert_close(averaged, same_question)
    assert not torch.allclose(averaged, eval_probabilities(model, IMAGES))


def test_averaging_identical_queries_changes_nothing_and_the_hooks_go_away() -> None:
    model = FixedQueries(torch.ones(5, 4) * torch.tensor([0.5, -1.0, 2.0, 0.0]))
    own = eval_probabilities(model, IMAGES)
    torch.testing.assert_close(averaged_query_probabilities(model, IMAGES), own)
    distinct = FixedQueries(torch.eye(4))
    before = eval_probabilities(distinct, IMAGES)
    with queries_replaced(distinct) as has_queries:
        assert has_queries
    torch.testing.assert_close(eval_probabilities(distinct, IMAGES), before)


@pytest.mark.parametrize("arch", ["msrn", "sgfn", "mgsgn", "cmasge", "msshared", "baseline"])
def test_averaged_queries_on_real_models(arch: str, graph: LabelGraph) -> None:
    """Every query model answers with its queries averaged (per image for MGSGN's); a model with one
    shared query answers the same; one without label attention has nothing to average."""
    torch.manual_seed(0)
    model = create_model(arch, NUM_CLASSES, graph, backbone="resnet18").train()
    with torch.no_grad():  # off the initial values, so zero-initialised gates hide no branch
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    averaged = averaged_query_probabilities(model, images)
    assert model.training
    if arch == "baseline":
        assert averaged is None
        return
    assert averaged is not None and averaged.shape == (3, NUM_CLASSES) and torch.isfinite(averaged).all()
    own = eval_probabilities(model, images)
    if arch == "msshared":
        torch.testing.assert_close(averaged, own)
    else:
        assert not torch.allclose(averaged, own)
