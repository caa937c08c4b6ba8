"""MSRN — Multi-layered Semantic Representation Network (Qu et al.), as its reference code builds it.

Label correlations are modelled twice: *locally*, by graph attention between neighbouring labels
(word embeddings → a linear layer → two residual GAT layers: one query per label), and
*globally*, by pooling those label vectors into K = ⌈0.2·C⌉ groups (DiffPool) that are queries
of their own. At stages 2, 3 and 4 every label and group query attends over a plain 1×1
projection of the map, per channel (a softmax over locations for each channel); the C + K query
features of the three stages are concatenated, squashed by tanh, and an MLP predicts the C
labels. A small loss keeps each label near the group it is assigned to.

Departures are knobs, each named in params.yaml when the demo uses it: the prediction head
(`head: per_label`, the reference's commented-out alternative: group features mapped back to
their labels through the assignment, one dot product per label), the attention (`dot`,
`cosine`), the projection (`conv_bn_relu`), and the two controls every graph model has
(`label_graph`, `queries`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.knobs import LabelGraphInput, MsrnHead, MsrnKnobs, Projection, QuerySource, Similarity
from mlic.models.layers import (
    STAGES_2_TO_4,
    Backbone,
    DiffPool,
    GATStack,
    LabelGuidedAttention,
    LearnedQueries,
    MultiScaleProjection,
    PerLabelClassifier,
    PretrainedWeights,
    group_count,
    labels_with_groups,
    register_graph_buffers,
)
from mlic.models.registry import ModelInputs, register_model


class LabelSemantics(nn.Module):
    """Word embeddings → C label queries (local: GAT over the label graph) and K group queries
    (global: DiffPool of the label queries), with the label-to-group assignment `[C, K]`."""

    def __init__(
        self,
        *,
        embedding_dim: int,
        word_dim: int,
        word_norm: float,
        hidden_dim: int,
        dim: int,
        heads: int,
        num_groups: int,
    ) -> None:
        super().__init__()
        self.word_norm = word_norm
        self.words = nn.Linear(embedding_dim, word_dim)
        self.local = GATStack([word_dim, hidden_dim, dim], heads, residual=True, activate_last=True)
        self.pool = DiffPool(dim, num_groups, heads)

    def forward(self, embeddings: Tensor, adjacency: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """→ label queries `[C, D]`, group queries `[K, D]`, assignment `[C, K]`."""
        labels = self.local(self.words(self.word_norm * embeddings), adjacency)
        groups, assignment = self.pool(F.relu(labels), adjacency)
        return labels, groups, assignment


class MSRN(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained: PretrainedWeights | None,
        *,
        semantic_dim: int,
        word_dim: int,
        word_norm: float,
        gat_hidden: int,
        gat_heads: int,
        pool_ratio: float,
        group_loss_weight: float,
        attention: Similarity,
        projection: Projection,
        head: MsrnHead,
        mlp_hidden: int,
        label_graph: LabelGraphInput,
        queries: QuerySource,
    ) -> None:
        super().__init__()
        num_classes = graph.num_classes
        num_groups = group_count(num_classes, pool_ratio)
        self.backbone = Backbone(backbone, strides=STAGES_2_TO_4, pretrained=pretrained)
        register_graph_buffers(self, graph, label_graph)
        self.semantics = (
            LabelSemantics(
                embedding_dim=graph.embedding_dim,
                word_dim=word_dim,
                word_norm=word_norm,
                hidden_dim=gat_hidden,
                dim=semantic_dim,
                heads=gat_heads,
                num_groups=num_groups,
            )
            if queries == "semantic"
            else None
        )
        self.learned_queries = (
            LearnedQueries(num_classes, semantic_dim, num_groups, assignment=head == "per_label")
            if queries == "learned"
            else None
        )
        self.project = MultiScaleProjection(self.backbone.channels, semantic_dim, projection)
        self.attend = LabelGuidedAttention(attention)
        width = len(self.backbone.channels) * semantic_dim
        self.head: nn.Module = (
            nn.Sequential(
                nn.Flatten(),
                nn.Linear(width * (num_classes + num_groups), mlp_hidden),
                nn.LeakyReLU(0.01),
                nn.Linear(mlp_hidden, num_classes),
            )
            if head == "mlp"
            else PerLabelClassifier(num_classes, 2 * width)
        )
        self.num_classes = num_classes
        self.group_loss_weight = group_loss_weight

    def label_and_group_queries(self) -> tuple[Tensor, Tensor | None]:
        """→ the C + K queries `[C + K, D]` and the `[C, K]` assignment (None when not needed)."""
        if self.semantics is not None:
            labels, groups, assignment = self.semantics(self.label_embeddings, self.adjacency)
            return torch.cat([labels, groups]), assignment
        assert self.learned_queries is not None
        return self.learned_queries()

    def forward(self, images: Tensor) -> Tensor:
        queries, assignment = self.label_and_group_queries()
        stages = [self.attend(queries, feature_map) for feature_map in self.project(self.backbone(images))]
        features = torch.cat(stages, dim=-1)  # [B, C + K, stages · D]
        if isinstance(self.head, PerLabelClassifier):
            assert assignment is not None
            features = labels_with_groups(features, assignment)
        return self.head(torch.tanh(features))

    def auxiliary_loss(self) -> Tensor:
        """The reference's group loss (image-independent: recomputed from the graph, cheap at C
        labels); zero for free queries, which have no groups to keep together."""
        if self.semantics is None:
            return self.adjacency.new_zeros(())
        labels, groups, assignment = self.semantics(self.label_embeddings, self.adjacency)
        return self.group_loss_weight * DiffPool.group_distance(labels, groups, assignment)


@register_model("msrn")
def msrn(*, inputs: ModelInputs, knobs: MsrnKnobs) -> nn.Module:
    """Every default is the reference code's: 300-d word vectors through a 256-d linear layer,
    single-head GAT layers 256 → 300 → 512, K = ⌈0.2·C⌉ groups, group loss 1e-4, per-channel
    attention on a plain projection, and the tanh → 2048 → C MLP head. On COCO (80 labels, 16
    groups) that MLP's first layer holds 302 M weights (82 M on the demo's 21 labels): `head: per_label`
    is the light one."""
    return MSRN(inputs.graph, inputs.backbone, inputs.pretrained, **knobs.model_dump())
