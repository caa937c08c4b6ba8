"""BCE baseline: backbone → global average pool → linear. The reference every graph model must beat."""

from __future__ import annotations

from torch import Tensor, nn

from mlic.knobs import BaselineKnobs, FeatureStride
from mlic.models.layers import (
    Backbone,
    GlobalPoolClassifier,
    PretrainedWeights,
)
from mlic.models.registry import ModelInputs, register_model


class Baseline(nn.Module):
    def __init__(
        self,
        num_classes: int,
        backbone: str,
        pretrained: PretrainedWeights | None,
        dropout: float,
        feature_stride: FeatureStride,
    ) -> None:
        super().__init__()
        self.backbone = Backbone.deepest(backbone, pretrained, feature_stride)
        self.head = GlobalPoolClassifier(self.backbone.out_channels, num_classes, pool="avg", dropout=dropout)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images)[-1])


@register_model("baseline")
def baseline(*, inputs: ModelInputs, knobs: BaselineKnobs) -> nn.Module:
    """The graph is not used: the baseline sees only pixels. `feature_stride` 16 is there so a
    single-map graph model reading a dilated map (CMA-SGE's knob) can be compared with a
    baseline reading the same map."""
    return Baseline(inputs.num_classes, inputs.backbone, inputs.pretrained, knobs.dropout, knobs.feature_stride)
