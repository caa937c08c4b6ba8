"""Static label-graph pieces shared by every graph model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mlic.graph.label_graph import LabelGraph


def register_graph_buffers(module: nn.Module, graph: LabelGraph) -> None:
    """Store the graph inputs as buffers, so a saved state_dict carries them and the model is
    self-contained at serving time."""
    module.register_buffer("adjacency", torch.from_numpy(np.asarray(graph.adjacency, dtype=np.float32)))
    module.register_buffer(
        "label_embeddings", torch.from_numpy(np.asarray(graph.label_embeddings, dtype=np.float32))
    )


def symmetric_normalise(adjacency: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """`D^-1/2 A D^-1/2`: keeps repeated propagation from growing or shrinking features."""
    degree = adjacency.sum(dim=-1).clamp_min(eps)
    inv_sqrt = degree.pow(-0.5)
    return inv_sqrt.unsqueeze(-1) * adjacency * inv_sqrt.unsqueeze(-2)
