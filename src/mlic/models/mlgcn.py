"""ML-GCN (Chen et al., CVPR 2019): a GCN over the static label graph turns label embeddings into
one classifier per label, applied to the globally max-pooled image feature."""

from __future__ import annotations

from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.knobs import FeatureStride, LabelGraphInput, MlgcnKnobs, PoolKind
from mlic.models.layers import (
    Backbone,
    GCNStack,
    PretrainedWeights,
    global_pool,
    register_graph_buffers,
)
from mlic.models.registry import ModelInputs, register_model


class MLGCN(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained: PretrainedWeights | None,
        *,
        hidden_dim: int,
        pool: PoolKind,
        feature_stride: FeatureStride,
        label_graph: LabelGraphInput,
    ) -> None:
        super().__init__()
        self.backbone = Backbone.deepest(backbone, pretrained, feature_stride)
        register_graph_buffers(self, graph, label_graph)
        self.pool = global_pool(pool)
        self.gcn = GCNStack([graph.embedding_dim, hidden_dim, self.backbone.out_channels])

    def forward(self, images: Tensor) -> Tensor:
        image_feature = self.pool(self.backbone(images)[-1]).flatten(1)  # [B, D]
        classifiers = self.gcn(self.label_embeddings, self.adjacency)  # [C, D]
        return image_feature @ classifiers.t()


@register_model("mlgcn")
def mlgcn(*, inputs: ModelInputs, knobs: MlgcnKnobs) -> nn.Module:
    """`hidden_dim` is the paper's 1024; `pool` is global max as in the paper (avg as a knob);
    `feature_stride` 16 reads a dilated last stage (`Backbone.deepest`)."""
    return MLGCN(inputs.graph, inputs.backbone, inputs.pretrained, **knobs.model_dump())
