"""SGFN — Semantic Guidance-based Fusion Network (Wang et al., Pattern Recognition Letters 2024).

Three ideas on top of a (TResNet, in the paper) backbone: a Feature Aggregation Module that
relates every position of the last map to every other (a non-local block); label semantics that
are both local (a GCN over the co-occurrence graph) and global (one vector pooled over all
labels); and those semantics guiding attention at stages 2–4, with the per-layer predictions
fused by learned weights.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models.layers import (
    STAGES_2_TO_4,
    AttentionPooling,
    Backbone,
    BranchFusion,
    CrossAttention2d,
    GCNStack,
    MultiLayerSemanticHead,
    SemanticCombine,
    SemanticFusion,
    Similarity,
    register_graph_buffers,
)
from mlic.models.layers.knobs import require_choice, require_count
from mlic.models.registry import register_model


class LocalGlobalSemantics(nn.Module):
    """Per-label semantics from a GCN over the static graph (local: a label and its co-occurring
    neighbours), plus one global semantic vector attention-pooled over all label nodes (the
    scene-level context every label shares), combined per label → `[C, D]`."""

    def __init__(self, embedding_dim: int, hidden_dim: int, dim: int, combine: SemanticCombine) -> None:
        super().__init__()
        self.local = GCNStack([embedding_dim, hidden_dim, dim])
        self.global_pool = AttentionPooling(dim, hidden_dim=dim // 2)
        self.combine = SemanticFusion(dim, combine)

    def forward(self, embeddings: Tensor, adjacency: Tensor) -> Tensor:
        local = self.local(embeddings, adjacency)
        return self.combine(local, self.global_pool(local))


class SGFN(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained_path: str | None,
        semantic_dim: int,
        gcn_hidden: int,
        fam_reduction: int,
        fam_heads: int,
        combine: SemanticCombine,
        layer_fusion: BranchFusion,
        attention: Similarity,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, strides=STAGES_2_TO_4, pretrained_path=pretrained_path)
        register_graph_buffers(self, graph)
        channels = self.backbone.out_channels
        self.feature_aggregation = CrossAttention2d(channels, channels, channels // fam_reduction, fam_heads)
        self.semantics = LocalGlobalSemantics(graph.embedding_dim, gcn_hidden, semantic_dim, combine)
        self.layers_head = MultiLayerSemanticHead(
            self.backbone.channels, semantic_dim, graph.num_classes, layer_fusion, attention
        )

    def forward(self, images: Tensor) -> Tensor:
        *shallow, deepest = self.backbone(images)
        feature_maps = [*shallow, self.feature_aggregation(deepest)]
        semantics = self.semantics(self.label_embeddings, self.adjacency)
        return self.layers_head(feature_maps, semantics)


@register_model("sgfn")
def sgfn(
    num_classes: int,
    graph: LabelGraph,
    backbone: str,
    pretrained_path: str | None = None,
    semantic_dim: int = 512,
    gcn_hidden: int = 1024,
    fam_reduction: int = 2,
    fam_heads: int = 1,
    combine: SemanticCombine = "concat",
    layer_fusion: BranchFusion = "learned",
    attention: Similarity = "dot",
) -> nn.Module:
    """`fam_reduction` 2 and one head follow the non-local block (inner width = channels / 2);
    the paper's learned fusion of layer predictions is the default. BCE is the loss (ASL, the
    paper's option, is a training-loss choice, not a model knob)."""
    require_count(
        "sgfn", semantic_dim=semantic_dim, gcn_hidden=gcn_hidden, fam_reduction=fam_reduction, fam_heads=fam_heads
    )
    require_choice("sgfn", "combine", combine, SemanticCombine)
    require_choice("sgfn", "layer_fusion", layer_fusion, BranchFusion)
    require_choice("sgfn", "attention", attention, Similarity)
    return SGFN(
        graph, backbone, pretrained_path, semantic_dim, gcn_hidden, fam_reduction, fam_heads, combine, layer_fusion,
        attention,
    )
