"""Where label-guided attention gets its queries: from the label graph, or free parameters.

The research models derive one query per label from the label graph and word embeddings (GAT,
GCN, ASGE). `queries: learned` swaps those for a free vector per query, trained like any other
weight: the control that tells what the graph-derived semantics add over label-specific
attention as such.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class LearnedQueries(nn.Module):
    """Free query vectors: one per label, then `num_groups` group queries (MSRN, SGFN's `groups`
    reading), drawn near-orthogonal (unit length on average), so they start as distinct as
    graph-derived ones can be. With `assignment`, a learned soft label-to-group assignment
    `[C, K]` (uniform at the start) stands in for the one the graph would have given."""

    def __init__(self, num_labels: int, dim: int, num_groups: int = 0, assignment: bool = False) -> None:
        super().__init__()
        self.vectors = nn.Parameter(torch.randn(num_labels + num_groups, dim) / math.sqrt(dim))
        self.assignment_logits = nn.Parameter(torch.zeros(num_labels, num_groups)) if assignment else None

    def forward(self) -> tuple[Tensor, Tensor | None]:
        """→ queries `[C + K, D]` and the assignment `[C, K]` (None without one)."""
        assignment = None if self.assignment_logits is None else self.assignment_logits.softmax(dim=-1)
        return self.vectors, assignment


def labels_with_groups(query_features: Tensor, assignment: Tensor) -> Tensor:
    """`[B, C + K, D]` features of C label queries then K group queries → `[B, C, 2D]`: each
    label's own features beside its groups' features, mixed through the soft assignment
    `[C, K]` (MSRN's element-wise prediction, and SGFN under its `groups` reading)."""
    num_classes = assignment.shape[0]
    label_features, group_features = query_features[:, :num_classes], query_features[:, num_classes:]
    return torch.cat([label_features, torch.matmul(assignment, group_features)], dim=-1)
