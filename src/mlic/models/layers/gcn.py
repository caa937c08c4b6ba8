"""Graph convolution `H' = Â H W` (Kipf & Welling), as used by ML-GCN and the research models."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GraphConvolution(nn.Module):
    """One GCN layer; the adjacency is passed in so static and per-image graphs share the layer.

    `adjacency` may be `[C, C]` (static) or `[B, C, C]` (dynamic, per image) with `nodes`
    `[C, F]` or `[B, C, F]`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        bound = 1.0 / math.sqrt(out_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, nodes: Tensor, adjacency: Tensor) -> Tensor:
        out = torch.matmul(adjacency, torch.matmul(nodes, self.weight))
        if self.bias is not None:
            out = out + self.bias
        return out


class GraphStack(nn.Module):
    """Graph layers (any `layer(nodes, adjacency)`) with an activation between them and, unless
    `activate_last`, none after the last: the output is usually a classifier or semantic vector
    that is used linearly."""

    def __init__(self, layers: list[nn.Module], act: nn.Module, activate_last: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.act = act
        self.activate_last = activate_last

    def forward(self, nodes: Tensor, adjacency: Tensor) -> Tensor:
        for index, layer in enumerate(self.layers):
            nodes = layer(nodes, adjacency)
            if self.activate_last or index < len(self.layers) - 1:
                nodes = self.act(nodes)
        return nodes


class GCNStack(GraphStack):
    """GCN layers with LeakyReLU(0.2) between them, as in ML-GCN."""

    def __init__(self, dims: list[int], negative_slope: float = 0.2) -> None:
        super().__init__(
            [GraphConvolution(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)], nn.LeakyReLU(negative_slope)
        )
