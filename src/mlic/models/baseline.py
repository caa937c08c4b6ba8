"""BCE baseline: backbone → global average pool → linear. The reference every graph model must beat."""

from __future__ import annotations

from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models.layers import Backbone
from mlic.models.registry import register_model


class Baseline(nn.Module):
    def __init__(self, num_classes: int, backbone: str, pretrained_path: str | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, out_indices=(4,), pretrained_path=pretrained_path)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.out_channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        features = self.backbone(images)[-1]
        return self.head(self.dropout(self.pool(features).flatten(1)))


@register_model("baseline")
def baseline(num_classes: int, graph: LabelGraph, backbone: str, pretrained_path: str | None = None, dropout: float = 0.0) -> nn.Module:
    """The graph is not used: the baseline sees only pixels."""
    return Baseline(num_classes, backbone, pretrained_path, dropout=dropout)
