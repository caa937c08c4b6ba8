"""Pooling: over image locations (global pool) and over label nodes (DiffPool, attention pooling)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mlic.knobs import PoolKind
from mlic.models.layers.gat import GATStack


def global_pool(kind: PoolKind) -> nn.Module:
    """`[B, D, H, W]` → `[B, D, 1, 1]`; max pooling is ML-GCN's choice (it keeps small objects'
    peaks), average is the usual ImageNet head."""
    return nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.AdaptiveAvgPool2d(1)


def group_count(num_classes: int, pool_ratio: float) -> int:
    """K = ⌈pool_ratio · C⌉ label groups: 16 for COCO's 80 labels and 4 for VOC's 20 at MSRN's
    0.2 (the reference's `int()` gives the same there), 5 for the demo's 21, and never 0."""
    return max(1, math.ceil(pool_ratio * num_classes - 1e-9))


class DiffPool(nn.Module):
    """Differentiable graph pooling (Ying et al., NeurIPS 2018) of the C label nodes into K groups,
    as MSRN's reference code builds its global label semantics.

    One GAT layer embeds the labels, another scores each label against the K groups (both with
    the reference's residual and ELU); a softmax over the groups is the soft assignment `S [C, K]`
    and the groups are `Sᵀ Z [K, D]`. The groups are queries of their own beside the labels: what
    a group finds in an image reaches its labels through the prediction head (or through `S`).
    The assignment layer has one head, since K need not divide by a head count.
    """

    def __init__(self, dim: int, num_groups: int, heads: int = 1) -> None:
        super().__init__()
        self.embed = GATStack([dim, dim], heads, residual=True, activate_last=True)
        self.assign = GATStack([dim, num_groups], 1, residual=True, activate_last=True)

    def forward(self, nodes: Tensor, adjacency: Tensor) -> tuple[Tensor, Tensor]:
        """`nodes [C, D]`, `adjacency [C, C]` → group vectors `[K, D]`, assignment `[C, K]`."""
        assignment = self.assign(nodes, adjacency).softmax(dim=-1)
        return assignment.t() @ self.embed(nodes, adjacency), assignment

    @staticmethod
    def group_distance(labels: Tensor, groups: Tensor, assignment: Tensor) -> Tensor:
        """MSRN's group loss: the summed distance from each label vector to the vector of the
        group it is assigned to most (weighted 1e-4 in the reference), so a group stays a
        summary of its members."""
        return (labels - groups[assignment.argmax(dim=-1)]).norm(dim=-1).sum()


class AttentionPooling(nn.Module):
    """Label nodes `[.., C, D]` → one vector `[.., D]`, weighting each label by a learned score
    (`softmax_i wᵀ tanh(W h_i)`): SGFN's global semantic vector shared by all labels."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 1))

    def forward(self, nodes: Tensor) -> Tensor:
        weights = self.score(nodes).softmax(dim=-2)  # [.., C, 1]
        return torch.sum(weights * nodes, dim=-2)
