"""Shared model pieces, written once and composed by the architectures."""

from mlic.models.layers.attention import CrossAttention2d, LabelGuidedAttention
from mlic.models.layers.backbone import STAGES_2_TO_4, Backbone, PretrainedWeights
from mlic.models.layers.classifier import GlobalPoolClassifier, PerLabelClassifier
from mlic.models.layers.fusion import SemanticFusion, WeightedSum
from mlic.models.layers.gat import GATStack, GraphAttention
from mlic.models.layers.gcn import GCNStack, GraphConvolution, GraphStack
from mlic.models.layers.graph_ops import (
    ablated_graph_inputs,
    register_graph_buffers,
)
from mlic.models.layers.multiscale import (
    ConvProjection,
    MultiLayerSemanticHead,
    MultiScaleProjection,
)
from mlic.models.layers.pooling import (
    AttentionPooling,
    DiffPool,
    global_pool,
    group_count,
)
from mlic.models.layers.queries import LearnedQueries, labels_with_groups

__all__ = [
    "STAGES_2_TO_4",
    "AttentionPooling",
    "Backbone",
    "ConvProjection",
    "CrossAttention2d",
    "DiffPool",
    "GATStack",
    "GCNStack",
    "GlobalPoolClassifier",
    "GraphAttention",
    "GraphConvolution",
    "GraphStack",
    "LabelGuidedAttention",
    "LearnedQueries",
    "PretrainedWeights",
    "MultiLayerSemanticHead",
    "MultiScaleProjection",
    "PerLabelClassifier",
    "SemanticFusion",
    "WeightedSum",
    "ablated_graph_inputs",
    "global_pool",
    "group_count",
    "labels_with_groups",
    "register_graph_buffers",
]
