"""MSRN — Multi-layered Semantic Representation Network (Qu et al.).

Label correlations are modelled twice: *locally*, by graph attention between neighbouring labels,
and *globally*, by pooling the label graph into a few groups whose semantics every member
shares. The combined label semantics then guide spatial attention at stages 2, 3 and 4 of the
backbone, so labels are found both in fine maps (small objects) and coarse ones (context); the
per-layer predictions are fused and added to an ordinary global-pool head.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models.layers import (
    STAGES_2_TO_4,
    Backbone,
    BranchFusion,
    DiffPool,
    GATStack,
    GlobalPoolClassifier,
    MultiLayerSemanticHead,
    SemanticCombine,
    SemanticFusion,
    Similarity,
    register_graph_buffers,
)
from mlic.models.layers.knobs import require_choice, require_count, require_divisible, require_weight
from mlic.models.registry import register_model


class LabelSemantics(nn.Module):
    """Local semantics (a GAT over the label graph) combined with global semantics (DiffPool groups
    handed back to their members) → one `[C, D]` semantic vector per label."""

    def __init__(
        self, embedding_dim: int, hidden_dim: int, dim: int, heads: int, num_groups: int, combine: SemanticCombine
    ) -> None:
        super().__init__()
        self.local = GATStack([embedding_dim, hidden_dim, dim], heads)
        self.pool = DiffPool(dim, num_groups)
        self.combine = SemanticFusion(dim, combine)

    def forward(self, embeddings: Tensor, adjacency: Tensor) -> tuple[Tensor, Tensor]:
        """→ semantics `[C, D]` and the label-to-group assignment `[C, K]`."""
        local = self.local(embeddings, adjacency)
        group_semantics, assignment = self.pool(local, adjacency)
        return self.combine(local, group_semantics), assignment


class MSRN(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained_path: str | None,
        semantic_dim: int,
        gat_hidden: int,
        gat_heads: int,
        num_groups: int,
        combine: SemanticCombine,
        layer_fusion: BranchFusion,
        pool_loss_weight: float,
        attention: Similarity,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, strides=STAGES_2_TO_4, pretrained_path=pretrained_path)
        register_graph_buffers(self, graph)
        self.semantics = LabelSemantics(graph.embedding_dim, gat_hidden, semantic_dim, gat_heads, num_groups, combine)
        self.layers_head = MultiLayerSemanticHead(
            self.backbone.channels, semantic_dim, graph.num_classes, layer_fusion, attention
        )
        self.global_head = GlobalPoolClassifier(self.backbone.out_channels, graph.num_classes)
        self.pool_loss_weight = pool_loss_weight

    def forward(self, images: Tensor) -> Tensor:
        feature_maps = self.backbone(images)
        semantics, _ = self.semantics(self.label_embeddings, self.adjacency)
        return self.layers_head(feature_maps, semantics) + self.global_head(feature_maps[-1])

    def auxiliary_loss(self) -> Tensor:
        """DiffPool's link-prediction and entropy regularisers on the label-to-group assignment
        (image-independent: recomputed from the graph, cheap at C labels)."""
        _, assignment = self.semantics(self.label_embeddings, self.adjacency)
        return self.pool_loss_weight * DiffPool.regularisation(assignment, self.adjacency)


@register_model("msrn")
def msrn(
    num_classes: int,
    graph: LabelGraph,
    backbone: str,
    pretrained_path: str | None = None,
    semantic_dim: int = 512,
    gat_hidden: int = 1024,
    gat_heads: int = 4,
    num_groups: int = 4,
    combine: SemanticCombine = "concat",
    layer_fusion: BranchFusion = "sum",
    pool_loss_weight: float = 0.1,
    attention: Similarity = "dot",
) -> nn.Module:
    """Defaults follow the reference code (512-d semantics, two GAT layers, stages 2–4, K≈4
    groups, summed layer logits); `pool_loss_weight` scales DiffPool's regularisers."""
    require_count("msrn", semantic_dim=semantic_dim, gat_hidden=gat_hidden, gat_heads=gat_heads, num_groups=num_groups)
    require_weight("msrn", pool_loss_weight=pool_loss_weight)
    require_divisible("msrn", "semantic_dim", semantic_dim, "gat_heads", gat_heads)
    require_divisible("msrn", "gat_hidden", gat_hidden, "gat_heads", gat_heads)
    require_choice("msrn", "combine", combine, SemanticCombine)
    require_choice("msrn", "layer_fusion", layer_fusion, BranchFusion)
    require_choice("msrn", "attention", attention, Similarity)
    return MSRN(
        graph, backbone, pretrained_path, semantic_dim, gat_hidden, gat_heads, num_groups, combine, layer_fusion,
        pool_loss_weight, attention,
    )
