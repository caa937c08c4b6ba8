"""Shared model pieces, written once and composed by the architectures."""

from mlic.models.layers.backbone import Backbone
from mlic.models.layers.gcn import GCNStack, GraphConvolution
from mlic.models.layers.graph_ops import register_graph_buffers, symmetric_normalise

__all__ = ["Backbone", "GCNStack", "GraphConvolution", "register_graph_buffers", "symmetric_normalise"]
