"""Several backbone stages brought to one width, and the per-layer label-semantic head.

Small objects are resolved only in the shallower, finer maps (stride 8), while the deepest map
(stride 32) carries the most semantics; the multi-layer models read stages 2–4 together.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlic.models.layers.attention import LabelGuidedAttention, Similarity
from mlic.models.layers.classifier import PerLabelClassifier
from mlic.models.layers.fusion import BranchFusion, WeightedSum


class ConvProjection(nn.Sequential):
    """1×1 conv → BN → ReLU: changes a map's width without mixing locations."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class MultiScaleProjection(nn.Module):
    """Project each stage (channels read from the backbone) to the same width `dim`, so label
    vectors of width `dim` can attend to every stage."""

    def __init__(self, in_channels: list[int], dim: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(ConvProjection(channels, dim) for channels in in_channels)

    def forward(self, feature_maps: list[Tensor]) -> list[Tensor]:
        return [project(feature_map) for project, feature_map in zip(self.projections, feature_maps)]


class MultiLayerSemanticHead(nn.Module):
    """Label semantics guide spatial attention at each layer; each layer predicts; the per-layer
    predictions are fused.

    This is the multi-layered semantic representation that MSRN (Qu et al.) introduced and SGFN
    (Wang et al.) reuses: per layer, `[C, D]` semantics attend over the projected map → per-label
    features `[B, C, D]` → a per-label classifier → logits `[B, C]`.
    """

    def __init__(
        self, in_channels: list[int], dim: int, num_classes: int, fusion: BranchFusion, similarity: Similarity = "dot"
    ) -> None:
        super().__init__()
        self.project = MultiScaleProjection(in_channels, dim)
        self.attend = LabelGuidedAttention(similarity)
        self.classifiers = nn.ModuleList(PerLabelClassifier(num_classes, dim) for _ in in_channels)
        self.fuse = WeightedSum(len(in_channels), fusion)

    def forward(self, feature_maps: list[Tensor], semantics: Tensor) -> Tensor:
        projected = self.project(feature_maps)
        layer_logits = [
            classify(self.attend(semantics, feature_map)) for classify, feature_map in zip(self.classifiers, projected)
        ]
        return self.fuse(layer_logits)
