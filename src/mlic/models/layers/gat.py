"""Graph attention (Veličković et al., ICLR 2018), restricted to the edges of the label graph.

Unlike a GCN, whose neighbour weights are the fixed adjacency values, a GAT learns how much each
neighbour matters — MSRN's reference code uses two such layers for its local label semantics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlic.models.layers.gcn import GraphStack


class GraphAttention(nn.Module):
    """Multi-head attention where label i only attends to labels j with `adjacency[i, j] > 0`.

    Self-loops are always allowed, so a label without neighbours keeps its own features. Heads
    split `out_features` evenly and are concatenated. `residual` adds each label's own projected
    features to what it gathers (`H' = softmax(e) H W + H W`, as MSRN's reference layer does):
    a label keeps its identity however alike its neighbours are.
    """

    def __init__(
        self, in_features: int, out_features: int, heads: int = 4, negative_slope: float = 0.2, residual: bool = False
    ) -> None:
        super().__init__()
        self.heads = heads
        self.residual = residual
        head_dim = out_features // heads
        self.project = nn.Linear(in_features, out_features, bias=False)
        self.source_score = nn.Parameter(torch.empty(heads, 1, head_dim))
        self.target_score = nn.Parameter(torch.empty(heads, 1, head_dim))
        nn.init.xavier_uniform_(self.source_score)
        nn.init.xavier_uniform_(self.target_score)
        self.negative_slope = negative_slope

    def forward(self, nodes: Tensor, adjacency: Tensor) -> Tensor:
        """`nodes` `[C, F]` (or `[B, C, F]`), `adjacency` `[C, C]` (or `[B, C, C]`) → `[.., C, out]`."""
        num_nodes = nodes.shape[-2]
        projected = self.project(nodes).unflatten(-1, (self.heads, -1)).transpose(-3, -2)  # [.., H, C, d]
        source = (projected * self.source_score).sum(-1)  # [.., H, C]
        target = (projected * self.target_score).sum(-1)
        logits = F.leaky_relu(source.unsqueeze(-1) + target.unsqueeze(-2), self.negative_slope)  # [.., H, C, C]
        edges = (adjacency > 0) | torch.eye(num_nodes, dtype=torch.bool, device=adjacency.device)
        logits = logits.masked_fill(~edges.unsqueeze(-3), float("-inf"))
        attended = torch.matmul(logits.softmax(dim=-1), projected)  # [.., H, C, d]
        if self.residual:
            attended = attended + projected
        return attended.transpose(-3, -2).flatten(-2)


class GATStack(GraphStack):
    """GAT layers with ELU between them, as in the GAT paper; `residual` and `activate_last` (ELU
    after the last layer too) are MSRN's reference layers."""

    def __init__(self, dims: list[int], heads: int, residual: bool = False, activate_last: bool = False) -> None:
        layers = [GraphAttention(a, b, heads, residual=residual) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        super().__init__(layers, nn.ELU(), activate_last)
