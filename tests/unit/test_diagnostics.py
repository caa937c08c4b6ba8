"""The label-query collapse check the quality bench reports: measured on real models and on
attention layers fed queries whose geometry is known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models import create_model
from mlic.models.diagnostics import label_query_cosine, mean_offdiagonal_cosine
from mlic.models.layers import LabelGuidedAttention, synthetic_label_graph

NUM_CLASSES = 6


class FixedQueries(nn.Module):
    """Label-guided attention asked with given queries: a model whose answer we know."""

    def __init__(self, queries: Tensor) -> None:
        super().__init__()
        self.register_buffer("queries", queries)
        self.attend = LabelGuidedAttention()

    def forward(self, images: Tensor) -> Tensor:
        return self.attend(self.queries, images).sum(-1)


IMAGES = torch.randn(2, 4, 3, 3)


@pytest.fixture(scope="module")
def graph() -> LabelGraph:
    return synthetic_label_graph(NUM_CLASSES, embedding_dim=16, num_images=200)


def test_identical_queries_read_as_collapsed() -> None:
    assert label_query_cosine(FixedQueries(torch.ones(5, 4) * torch.arange(1, 6)[:, None]), IMAGES) == pytest.approx(1.0)


def test_orthogonal_queries_read_as_distinct() -> None:
    assert label_query_cosine(FixedQueries(torch.eye(4)), IMAGES) == pytest.approx(0.0, abs=1e-6)


def test_per_image_queries_are_averaged_over_the_batch() -> None:
    per_image = torch.stack([torch.eye(3), torch.ones(3, 3)])  # one distinct sample, one collapsed
    assert mean_offdiagonal_cosine(per_image) == pytest.approx(0.5)


def test_model_without_label_guided_attention_has_no_figure(graph: LabelGraph) -> None:
    assert label_query_cosine(create_model("baseline", NUM_CLASSES, graph, backbone="resnet18"), torch.randn(1, 3, 64, 64)) is None


@pytest.mark.parametrize("arch", ["msrn", "mgsgn", "sgfn", "cmasge"])
def test_every_research_model_is_measured_and_left_as_it_was(arch: str, graph: LabelGraph) -> None:
    model = create_model(arch, NUM_CLASSES, graph, backbone="resnet18").train()
    cosine = label_query_cosine(model, torch.randn(2, 3, 64, 64))
    assert cosine is not None and -1.0 <= cosine <= 1.0
    assert model.training  # the probe restores the mode it found
    assert not any(module._forward_pre_hooks for module in model.modules())  # and removes its hooks
