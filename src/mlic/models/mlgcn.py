"""ML-GCN (Chen et al., CVPR 2019): a GCN over the static label graph turns label embeddings into
one classifier per label, applied to the globally max-pooled image feature."""

from __future__ import annotations

from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models.layers import (
    Backbone,
    FeatureStride,
    GCNStack,
    LabelGraphInput,
    PoolKind,
    global_pool,
    register_graph_buffers,
)
from mlic.models.layers.knobs import require_choice, require_count
from mlic.models.registry import register_model


class MLGCN(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained_path: str | None,
        *,
        hidden_dim: int,
        pool: PoolKind,
        feature_stride: FeatureStride,
        label_graph: LabelGraphInput,
    ) -> None:
        super().__init__()
        self.backbone = Backbone.deepest(backbone, pretrained_path, feature_stride)
        register_graph_buffers(self, graph, label_graph)
        self.pool = global_pool(pool)
        self.gcn = GCNStack([graph.embedding_dim, hidden_dim, self.backbone.out_channels])

    def forward(self, images: Tensor) -> Tensor:
        image_feature = self.pool(self.backbone(images)[-1]).flatten(1)  # [B, D]
        classifiers = self.gcn(self.label_embeddings, self.adjacency)  # [C, D]
        return image_feature @ classifiers.t()


@register_model("mlgcn")
def mlgcn(
    *,
    num_classes: int,
    graph: LabelGraph,
    backbone: str,
    pretrained_path: str | None = None,
    hidden_dim: int = 1024,
    pool: PoolKind = "max",
    feature_stride: FeatureStride = 32,
    label_graph: LabelGraphInput = "cooccurrence",
) -> nn.Module:
    """`hidden_dim` is the paper's 1024; `pool` is global max as in the paper (avg as a knob);
    `feature_stride` 16 reads a dilated last stage (`Backbone.deepest`)."""
    require_count("mlgcn", hidden_dim=hidden_dim)
    require_choice("mlgcn", "pool", pool, PoolKind)
    require_choice("mlgcn", "feature_stride", feature_stride, FeatureStride)
    require_choice("mlgcn", "label_graph", label_graph, LabelGraphInput)
    return MLGCN(
        graph, backbone, pretrained_path, hidden_dim=hidden_dim, pool=pool, feature_stride=feature_stride,
        label_graph=label_graph,
    )
