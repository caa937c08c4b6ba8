"""Classifier heads: one per label (on label-specific features) and one on the pooled image."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mlic.models.layers.pooling import PoolKind, global_pool


class PerLabelClassifier(nn.Module):
    """Logits from label-specific features `[B, C, D]` by a per-label dot product (`[C, D]`
    weight): label k is scored only from the features attention gathered for label k."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, label_features: Tensor) -> Tensor:
        return (label_features * self.weight).sum(dim=-1) + self.bias


class GlobalPoolClassifier(nn.Module):
    """Global pool → dropout → linear: the plain image-level head (the baseline, and the global
    branch that MSRN and CMA-SGE add to their label-specific logits)."""

    def __init__(self, in_channels: int, num_classes: int, pool: PoolKind = "avg", dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = global_pool(pool)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feature_map: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(feature_map).flatten(1)))
