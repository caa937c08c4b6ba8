"""Several backbone stages brought to one width, and the per-layer label-semantic head.

Small objects are resolved only in the shallower, finer maps (stride 8), while the deepest map
(stride 32) carries the most semantics; the multi-layer models read stages 2–4 together.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlic.knobs import Projection
from mlic.models.layers.attention import LabelGuidedAttention, Similarity
from mlic.models.layers.classifier import PerLabelClassifier
from mlic.models.layers.fusion import BranchFusion, WeightedSum
from mlic.models.layers.queries import labels_with_groups


class ConvProjection(nn.Sequential):
    """1×1 conv → BN → ReLU: changes a map's width without mixing locations."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def stage_projection(in_channels: int, out_channels: int, kind: Projection) -> nn.Module:
    return (
        nn.Conv2d(in_channels, out_channels, kernel_size=1)
        if kind == "plain"
        else ConvProjection(in_channels, out_channels)
    )


class MultiScaleProjection(nn.Module):
    """Project each stage (channels read from the backbone) to the same width `dim`, so label
    vectors of width `dim` can attend to every stage."""

    def __init__(self, in_channels: list[int], dim: int, kind: Projection = "conv_bn_relu") -> None:
        super().__init__()
        self.projections = nn.ModuleList(stage_projection(channels, dim, kind) for channels in in_channels)

    def forward(self, feature_maps: list[Tensor]) -> list[Tensor]:
        return [project(feature_map) for project, feature_map in zip(self.projections, feature_maps, strict=True)]


class MultiLayerSemanticHead(nn.Module):
    """Queries guide spatial attention at each layer; each layer predicts; the per-layer
    predictions are fused.

    Per layer: the queries attend over the projected map → per-query features → a per-label
    classifier → logits `[B, C]`. The queries are one per label (`[C, D]`); or C label queries
    followed by K group queries, when `forward` gets the `[C, K]` assignment (each label is then
    scored from its own features beside its groups'); or a single query shared by every label
    (the `msshared` control: one saliency pooling per layer, read by per-label classifiers).
    """

    def __init__(
        self,
        in_channels: list[int],
        dim: int,
        num_classes: int,
        fusion: BranchFusion,
        similarity: Similarity = "dot",
        grouped: bool = False,
        projection: Projection = "conv_bn_relu",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.project = MultiScaleProjection(in_channels, dim, projection)
        self.attend = LabelGuidedAttention(similarity)
        width = 2 * dim if grouped else dim
        self.classifiers = nn.ModuleList(PerLabelClassifier(num_classes, width) for _ in in_channels)
        self.fuse = WeightedSum(len(in_channels), fusion)

    def forward(self, feature_maps: list[Tensor], queries: Tensor, assignment: Tensor | None = None) -> Tensor:
        layer_logits = []
        for classify, feature_map in zip(self.classifiers, self.project(feature_maps), strict=True):
            features = self.attend(queries, feature_map)
            if assignment is not None:
                features = labels_with_groups(features, assignment)
            elif features.shape[1] == 1:
                features = features.expand(-1, self.num_classes, -1)
            layer_logits.append(classify(features))
        return self.fuse(layer_logits)
