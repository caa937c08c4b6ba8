"""Pooling: over image locations (global pool) and over label nodes (DiffPool, attention pooling)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mlic.models.layers.gcn import GCNStack
from mlic.models.layers.graph_ops import symmetric_normalise

PoolKind = Literal["avg", "max"]


def global_pool(kind: PoolKind) -> nn.Module:
    """`[B, D, H, W]` → `[B, D, 1, 1]`; max pooling is ML-GCN's choice (it keeps small objects'
    peaks), average is the usual ImageNet head."""
    return nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.AdaptiveAvgPool2d(1)


class DiffPool(nn.Module):
    """Differentiable graph pooling (Ying et al., NeurIPS 2018) of the C label nodes into K groups.

    MSRN's *global* label semantics: a GCN scores each label against K groups, a softmax turns the
    scores into a soft assignment `S [C, K]`, the groups are `Sᵀ Z`, and one GCN layer exchanges
    information between groups over the coarsened graph `Sᵀ A S`. Each label gets its groups'
    semantics back through `S`, so labels of one group (say, kitchen objects) share a vector.
    """

    def __init__(self, dim: int, num_groups: int) -> None:
        super().__init__()
        self.assign = GCNStack([dim, num_groups])
        self.group_gcn = GCNStack([dim, dim])

    def forward(self, nodes: Tensor, adjacency: Tensor) -> tuple[Tensor, Tensor]:
        """`nodes [C, D]`, `adjacency [C, C]` → per-label group semantics `[C, D]`, assignment `[C, K]`."""
        assignment = self.assign(nodes, adjacency).softmax(dim=-1)
        groups = assignment.t() @ nodes  # [K, D]
        coarse_adjacency = symmetric_normalise(assignment.t() @ adjacency @ assignment)
        return assignment @ self.group_gcn(groups, coarse_adjacency), assignment

    @staticmethod
    def regularisation(assignment: Tensor, adjacency: Tensor) -> Tensor:
        """DiffPool's two auxiliary terms: link prediction (labels joined by an edge should share a
        group: `‖1[A>0] − S Sᵀ‖²`, mean over pairs) and assignment entropy (each label should
        commit to few groups)."""
        links = (adjacency > 0).to(assignment.dtype)
        link_loss = (links - assignment @ assignment.t()).pow(2).mean()
        entropy = -(assignment * assignment.clamp_min(1e-12).log()).sum(dim=-1).mean()
        return link_loss + entropy


class AttentionPooling(nn.Module):
    """Label nodes `[.., C, D]` → one vector `[.., D]`, weighting each label by a learned score
    (`softmax_i wᵀ tanh(W h_i)`): SGFN's global semantic vector shared by all labels."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 1))

    def forward(self, nodes: Tensor) -> Tensor:
        weights = self.score(nodes).softmax(dim=-2)  # [.., C, 1]
        return torch.sum(weights * nodes, dim=-2)
