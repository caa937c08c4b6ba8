"""BCE baseline: backbone → global average pool → linear. The reference every graph model must beat."""

from __future__ import annotations

from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.models.layers import Backbone, FeatureStride, GlobalPoolClassifier
from mlic.models.layers.knobs import require_choice, require_range
from mlic.models.registry import register_model


class Baseline(nn.Module):
    def __init__(
        self, num_classes: int, backbone: str, pretrained_path: str | None, dropout: float, feature_stride: FeatureStride
    ) -> None:
        super().__init__()
        self.backbone = Backbone.deepest(backbone, pretrained_path, feature_stride)
        self.head = GlobalPoolClassifier(self.backbone.out_channels, num_classes, pool="avg", dropout=dropout)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images)[-1])


@register_model("baseline")
def baseline(
    *,
    num_classes: int,
    graph: LabelGraph,
    backbone: str,
    pretrained_path: str | None = None,
    dropout: float = 0.0,
    feature_stride: FeatureStride = 32,
) -> nn.Module:
    """The graph is not used: the baseline sees only pixels. `feature_stride` 16 is there so a
    single-map graph model reading a dilated map (CMA-SGE's knob) can be compared with a
    baseline reading the same map."""
    require_range("baseline", "dropout", dropout, 0.0, 1.0)
    require_choice("baseline", "feature_stride", feature_stride, FeatureStride)
    return Baseline(num_classes, backbone, pretrained_path, dropout, feature_stride)
