"""Shared model pieces, written once and composed by the architectures."""

from mlic.models.layers.attention import CrossAttention2d, LabelGuidedAttention, Similarity
from mlic.models.layers.backbone import STAGES_2_TO_4, Backbone, FeatureStride
from mlic.models.layers.classifier import GlobalPoolClassifier, PerLabelClassifier
from mlic.models.layers.fusion import BranchFusion, SemanticCombine, SemanticFusion, WeightedSum
from mlic.models.layers.gat import GATStack, GraphAttention
from mlic.models.layers.gcn import GCNStack, GraphConvolution, GraphStack
from mlic.models.layers.graph_ops import (
    LabelGraphInput,
    ablated_graph_inputs,
    register_graph_buffers,
    symmetric_normalise,
    synthetic_label_graph,
)
from mlic.models.layers.multiscale import ConvProjection, MultiLayerSemanticHead, MultiScaleProjection, Projection
from mlic.models.layers.queries import LearnedQueries, QuerySource, labels_with_groups
from mlic.models.layers.pooling import AttentionPooling, DiffPool, PoolKind, global_pool, group_count

__all__ = [
    "STAGES_2_TO_4",
    "AttentionPooling",
    "Backbone",
    "BranchFusion",
    "ConvProjection",
    "CrossAttention2d",
    "DiffPool",
    "FeatureStride",
    "GATStack",
    "GCNStack",
    "GlobalPoolClassifier",
    "GraphAttention",
    "GraphConvolution",
    "GraphStack",
    "LabelGraphInput",
    "LabelGuidedAttention",
    "LearnedQueries",
    "MultiLayerSemanticHead",
    "MultiScaleProjection",
    "PerLabelClassifier",
    "PoolKind",
    "Projection",
    "QuerySource",
    "SemanticCombine",
    "SemanticFusion",
    "Similarity",
    "WeightedSum",
    "ablated_graph_inputs",
    "global_pool",
    "group_count",
    "labels_with_groups",
    "register_graph_buffers",
    "symmetric_normalise",
    "synthetic_label_graph",
]
