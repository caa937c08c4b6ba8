"""Label-agnostic controls for the multi-layer models: everything but the label semantics.

MSRN, SGFN and MGSGN read stages 2–4 through a projection and extra heads, where the baseline
reads one 3×3 map (at 96 px) with one head. A research model's lead over the baseline therefore
mixes two effects: several scales with attention pooling, and label-specific semantics. These
controls keep the first and drop the second, so the second can be measured:

- `msbaseline`: the same stages and projection, average pooling per stage (max with `pool:
  max`), a linear head per stage, the stage logits fused by learned weights. No label graph,
  no attention.
- `msshared`: the same, but each stage is pooled by attention with **one learned query shared
  by all labels**, read by per-label classifiers — the strongest label-agnostic control, and
  the one a claim about label-specific attention has to beat. It is also what a research
  model becomes when its label queries collapse to one direction.

Neither uses the graph it is given.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlic.knobs import BranchFusion, MsbaselineKnobs, MssharedKnobs, PoolKind, Projection, Similarity
from mlic.models.layers import (
    STAGES_2_TO_4,
    Backbone,
    GlobalPoolClassifier,
    LearnedQueries,
    MultiLayerSemanticHead,
    MultiScaleProjection,
    PretrainedWeights,
    WeightedSum,
)
from mlic.models.registry import ModelInputs, register_model


class MultiScaleBaseline(nn.Module):
    def __init__(
        self,
        num_classes: int,
        backbone: str,
        pretrained: PretrainedWeights | None,
        *,
        dim: int,
        projection: Projection,
        layer_fusion: BranchFusion,
        pool: PoolKind,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, strides=STAGES_2_TO_4, pretrained=pretrained)
        self.project = MultiScaleProjection(self.backbone.channels, dim, projection)
        self.heads = nn.ModuleList(GlobalPoolClassifier(dim, num_classes, pool) for _ in self.backbone.channels)
        self.fuse = WeightedSum(len(self.backbone.channels), layer_fusion)

    def forward(self, images: Tensor) -> Tensor:
        projected = self.project(self.backbone(images))
        return self.fuse([head(feature_map) for head, feature_map in zip(self.heads, projected, strict=True)])


class MultiScaleSharedQuery(nn.Module):
    def __init__(
        self,
        num_classes: int,
        backbone: str,
        pretrained: PretrainedWeights | None,
        *,
        dim: int,
        projection: Projection,
        layer_fusion: BranchFusion,
        attention: Similarity,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, strides=STAGES_2_TO_4, pretrained=pretrained)
        self.shared_query = LearnedQueries(1, dim)
        self.layers_head = MultiLayerSemanticHead(
            self.backbone.channels, dim, num_classes, layer_fusion, attention, projection=projection
        )

    def forward(self, images: Tensor) -> Tensor:
        query, _ = self.shared_query()
        return self.layers_head(self.backbone(images), query)


@register_model("msbaseline")
def msbaseline(*, inputs: ModelInputs, knobs: MsbaselineKnobs) -> nn.Module:
    """512-d stages through 1×1 conv–BN–ReLU, as SGFN and MGSGN project them; set `projection:
    plain` to match MSRN's reference projection."""
    return MultiScaleBaseline(inputs.num_classes, inputs.backbone, inputs.pretrained, **knobs.model_dump())


@register_model("msshared")
def msshared(*, inputs: ModelInputs, knobs: MssharedKnobs) -> nn.Module:
    """As `msbaseline`, with `attention` the form of label-guided attention the shared query uses
    (set it to what the research model under test uses)."""
    return MultiScaleSharedQuery(inputs.num_classes, inputs.backbone, inputs.pretrained, **knobs.model_dump())
