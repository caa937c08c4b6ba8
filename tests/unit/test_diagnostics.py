"""The label-attention checks the quality bench reports (query collapse, sharpness): measured on
real models and on attention layers fed queries whose geometry is known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models import create_model
from mlic.models.diagnostics import (
    LabelAttentionProbe,
    mean_normalised_entropy,
    mean_offdiagonal_cosine,
    probe_label_attention,
)
from mlic.models.layers import LabelGuidedAttention, Similarity, synthetic_label_graph

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
