"""SGFN — Semantic Guidance-based Fusion Network.

Three ideas on top of a (TResNet, in the paper) backbone: a Feature Aggregation Module that
relates every position of the last map to every other (a non-local block); label semantic
correlation, "local and global"; and those semantics guiding attention at stages 2–4, with the
per-layer predictions fused by learned weights.

The paper's abstract says no more of "global" semantics than the word, so the reading is a knob
(`global_semantics`):

- `groups` (the default): the label graph pooled into K = ⌈0.2·C⌉ groups (DiffPool), each
  group a query of its own beside the labels, and each label scored from its own features
  beside its groups' — the reading closest to the wording, which follows MSRN's;
- `shared`: one vector attention-pooled over all labels and combined with each label's. After
  a linear layer that is one offset added to every query, which pulls the queries together;
- `none`: the GCN's local semantics alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.knobs import (
    BranchFusion,
    GlobalSemantics,
    LabelGraphInput,
    QuerySource,
    SemanticCombine,
    SgfnKnobs,
    Similarity,
)
from mlic.models.layers import (
    STAGES_2_TO_4,
    AttentionPooling,
    Backbone,
    CrossAttention2d,
    DiffPool,
    GCNStack,
    LearnedQueries,
    MultiLayerSemanticHead,
    PretrainedWeights,
    SemanticFusion,
    group_count,
    register_graph_buffers,
)
from mlic.models.registry import ModelInputs, register_model


class LocalGlobalSemantics(nn.Module):
    """Per-label semantics from a GCN over the static graph (local: a label and its co-occurring
    neighbours), with global semantics as `reading` asks → the queries, and the label-to-group
    assignment when the groups are queries of their own."""

    def __init__(
        self,
        embedding_dim: int,
        hidden_dim: int,
        dim: int,
        reading: GlobalSemantics,
        combine: SemanticCombine,
        num_groups: int,
    ) -> None:
        super().__init__()
        self.local = GCNStack([embedding_dim, hidden_dim, dim])
        self.reading = reading
        if reading == "groups":
            self.groups = DiffPool(dim, num_groups)
        elif reading == "shared":
            self.global_pool = AttentionPooling(dim, hidden_dim=dim // 2)
            self.combine = SemanticFusion(dim, combine)

    def forward(self, embeddings: Tensor, adjacency: Tensor) -> tuple[Tensor, Tensor | None]:
        local = self.local(embeddings, adjacency)
        if self.reading == "groups":
            groups, assignment = self.groups(local, adjacency)
            return torch.cat([local, groups]), assignment
        if self.reading == "shared":
            return self.combine(local, self.global_pool(local)), None
        return local, None


class SGFN(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained: PretrainedWeights | None,
        *,
        semantic_dim: int,
        gcn_hidden: int,
        fam_reduction: int,
        fam_heads: int,
        global_semantics: GlobalSemantics,
        pool_ratio: float,
        combine: SemanticCombine,
        layer_fusion: BranchFusion,
        attention: Similarity,
        label_graph: LabelGraphInput,
        queries: QuerySource,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, strides=STAGES_2_TO_4, pretrained=pretrained)
        register_graph_buffers(self, graph, label_graph)
        channels = self.backbone.out_channels
        num_groups = group_count(graph.num_classes, pool_ratio)
        grouped = global_semantics == "groups"
        self.feature_aggregation = CrossAttention2d(channels, channels, channels // fam_reduction, fam_heads)
        self.semantics = (
            LocalGlobalSemantics(graph.embedding_dim, gcn_hidden, semantic_dim, global_semantics, combine, num_groups)
            if queries == "semantic"
            else None
        )
        self.learned_queries = (
            LearnedQueries(graph.num_classes, semantic_dim, num_groups if grouped else 0, assignment=grouped)
            if queries == "learned"
            else None
        )
        self.layers_head = MultiLayerSemanticHead(
            self.backbone.channels, semantic_dim, graph.num_classes, layer_fusion, attention, grouped=grouped
        )

    def forward(self, images: Tensor) -> Tensor:
        *shallow, deepest = self.backbone(images)
        feature_maps = [*shallow, self.feature_aggregation(deepest)]
        if self.semantics is not None:
            queries, assignment = self.semantics(self.label_embeddings, self.adjacency)
        else:
            assert self.learned_queries is not None
            queries, assignment = self.learned_queries()
        return self.layers_head(feature_maps, queries, assignment)


@register_model("sgfn")
def sgfn(*, inputs: ModelInputs, knobs: SgfnKnobs) -> nn.Module:
    """`fam_reduction` 2 and one head follow the non-local block (inner width = channels / 2);
    the paper's learned fusion of layer predictions is the default; `pool_ratio` sizes the
    groups as MSRN does; `combine` only matters for the `shared` reading. The loss is BCE: the
    paper's ASL option is not implemented."""
    return SGFN(inputs.graph, inputs.backbone, inputs.pretrained, **knobs.model_dump())
