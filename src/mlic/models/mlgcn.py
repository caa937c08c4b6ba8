"""ML-GCN (Chen et al., CVPR 2019): a GCN over the static label graph turns label embeddings into
one classifier per label, applied to the globally max-pooled image feature."""

from __future__ import annotations

from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models.layers import Backbone, GCNStack, register_graph_buffers
from mlic.models.registry import register_model


class MLGCN(nn.Module):
    def __init__(self, graph: LabelGraph, backbone: str, pretrained_path: str | None, hidden_dim: int, pool: str) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, out_indices=(4,), pretrained_path=pretrained_path)
        register_graph_buffers(self, graph)
        self.pool = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
        self.gcn = GCNStack([graph.embedding_dim, hidden_dim, self.backbone.out_channels])

    def forward(self, images: Tensor) -> Tensor:
        image_feature = self.pool(self.backbone(images)[-1]).flatten(1)  # [B, D]
        classifiers = self.gcn(self.label_embeddings, self.adjacency)  # [C, D]
        return image_feature @ classifiers.t()


@register_model("mlgcn")
def mlgcn(
    num_classes: int,
    graph: LabelGraph,
    backbone: str,
    pretrained_path: str | None = None,
    hidden_dim: int = 1024,
    pool: str = "max",
) -> nn.Module:
    """`hidden_dim` is the paper's 1024; `pool` is global max as in the paper (avg as a knob)."""
    if pool not in ("max", "avg"):
        from mlic.errors import ConfigError

        raise ConfigError(f"pool must be 'max' or 'avg', got {pool!r}", field="models.mlgcn.pool")
    return MLGCN(graph, backbone, pretrained_path, hidden_dim, pool)
