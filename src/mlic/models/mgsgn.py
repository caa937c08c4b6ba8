"""MGSGN — Multi-scale Global-local Semantic Graph Network (Kuang, Zhu, Li, ECML-PKDD 2023).

1. Multi-scale feature reconstruction: stages 2–4 at one width; the deepest map queries each
   shallower map (cross-layer attention) so it is rebuilt with the detail it lacks; the
   reconstructed maps are fused.
2. Channel dual-branch cross-attention: a global branch (pooled channel descriptor) and a local
   branch (spatial features) each compute channel attention that re-weights the *other* branch;
   a learned softmax weight fuses the two — locating the targets.
3. Multi-perspective dynamic semantic representation: label-guided attention gives per-image
   label representations `V`; P learned perspectives of weighted cosine similarity between them
   form an image-specific graph, which, mixed with the static co-occurrence graph (global-local),
   carries a GCN that refines `V` before per-label classification.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.knobs import LabelGraphInput, MapFusion, MgsgnKnobs, QuerySource, ReconstructionStride, Similarity
from mlic.models.layers import (
    STAGES_2_TO_4,
    Backbone,
    ConvProjection,
    CrossAttention2d,
    GCNStack,
    LabelGuidedAttention,
    LearnedQueries,
    MultiScaleProjection,
    PerLabelClassifier,
    PretrainedWeights,
    WeightedSum,
    register_graph_buffers,
)
from mlic.models.registry import ModelInputs, register_model


class CrossScaleReconstruction(nn.Module):
    """The deepest map (query) attends to each shallower map (keys/values): one reconstruction
    per shallow scale, fused with the deepest map itself — by a 1×1 conv over their
    concatenation (`concat`) or by addition (`sum`). The query map is the deepest map at
    `resolution_index`'s resolution (bilinear upsampling when that is a shallower stage)."""

    def __init__(
        self, dim: int, num_shallow: int, attention_dim: int, heads: int, fusion: MapFusion, resolution_index: int = -1
    ) -> None:
        super().__init__()
        self.attend = nn.ModuleList(CrossAttention2d(dim, dim, attention_dim, heads) for _ in range(num_shallow))
        self.fuse = ConvProjection((num_shallow + 1) * dim, dim) if fusion == "concat" else None
        self.resolution_index = resolution_index

    def forward(self, feature_maps: list[Tensor]) -> Tensor:
        *shallow, deepest = feature_maps
        size = feature_maps[self.resolution_index].shape[-2:]
        if deepest.shape[-2:] != size:
            deepest = F.interpolate(deepest, size=size, mode="bilinear", align_corners=False)
        rebuilt = [deepest] + [attend(deepest, context) for attend, context in zip(self.attend, shallow, strict=True)]
        if self.fuse is None:
            return torch.stack(rebuilt).sum(dim=0)
        return self.fuse(torch.cat(rebuilt, dim=1))


def _channel_mlp(channels: int, reduction: int) -> nn.Sequential:
    """Squeeze-and-excitation bottleneck as 1×1 convs, so it runs per location or on a pooled
    descriptor alike."""
    hidden = max(1, channels // reduction)
    return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))


class ChannelDualBranchAttention(nn.Module):
    """Global branch: channel attention from the average-pooled descriptor (what the whole image
    holds). Local branch: a depthwise 3×3 conv keeps spatial detail, and its channel attention is
    taken per location then max-pooled (channels that fire strongly *somewhere* — small objects).
    Each branch is re-weighted by the *other* branch's attention (cross-attention), and a learned
    softmax weight fuses the two."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.local_context = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), nn.BatchNorm2d(channels)
        )
        self.global_mlp = _channel_mlp(channels, reduction)
        self.local_mlp = _channel_mlp(channels, reduction)
        self.fuse = WeightedSum(2, "learned")

    def forward(self, features: Tensor) -> Tensor:
        local = self.local_context(features)
        global_attention = torch.sigmoid(self.global_mlp(features.mean(dim=(2, 3), keepdim=True)))
        local_attention = torch.sigmoid(self.local_mlp(local).amax(dim=(2, 3), keepdim=True))
        return self.fuse([features * local_attention, local * global_attention])


class MultiPerspectiveGraph(nn.Module):
    """An image-specific label graph from label representations `V [B, C, D]`.

    For each perspective p, `S_p[i, j] = cos(w_p ⊙ v_i, w_p ⊙ v_j)` with a learned `w_p` that
    emphasises some feature dimensions; the mean over perspectives is cut at zero, optionally
    kept to each label's `top_k` strongest neighbours (itself included), and row-normalised so a
    GCN averages rather than sums neighbours.
    """

    def __init__(self, dim: int, perspectives: int, top_k: int | None, eps: float = 1e-6) -> None:
        super().__init__()
        # Distinct random weights: identical perspectives would receive identical gradients.
        self.perspective_weights = nn.Parameter(torch.rand(perspectives, 1, dim))
        self.top_k = top_k
        self.eps = eps

    def forward(self, label_features: Tensor) -> Tensor:
        weighted = F.normalize(label_features.unsqueeze(1) * self.perspective_weights, dim=-1)  # [B, P, C, D]
        similarity = F.relu(torch.matmul(weighted, weighted.transpose(-1, -2)).mean(dim=1))  # [B, C, C]
        if self.top_k is not None and self.top_k < similarity.shape[-1]:
            kth_largest = similarity.topk(self.top_k, dim=-1).values[..., -1:]
            similarity = similarity * (similarity >= kth_largest)
        return similarity / (similarity.sum(dim=-1, keepdim=True) + self.eps)


class MGSGN(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained: PretrainedWeights | None,
        *,
        feature_dim: int,
        attention_dim: int,
        attention_heads: int,
        map_fusion: MapFusion,
        channel_reduction: int,
        perspectives: int,
        top_k: int | None,
        gcn_hidden: int,
        attention: Similarity,
        reconstruction_stride: ReconstructionStride,
        label_graph: LabelGraphInput,
        queries: QuerySource,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, strides=STAGES_2_TO_4, pretrained=pretrained)
        register_graph_buffers(self, graph, label_graph)
        self.project = MultiScaleProjection(self.backbone.channels, feature_dim)
        self.reconstruct = CrossScaleReconstruction(
            feature_dim,
            len(self.backbone.channels) - 1,
            attention_dim,
            attention_heads,
            map_fusion,
            resolution_index=STAGES_2_TO_4.index(reconstruction_stride),
        )
        self.channel_attention = ChannelDualBranchAttention(feature_dim, channel_reduction)
        # No bias: word vectors are unit length (entries ~0.05), and a default bias as large as
        # that signal would start every label at nearly the same query (see CMA-SGE's ASGE).
        self.label_queries = nn.Linear(graph.embedding_dim, feature_dim, bias=False) if queries == "semantic" else None
        self.learned_queries = LearnedQueries(graph.num_classes, feature_dim) if queries == "learned" else None
        self.attend = LabelGuidedAttention(attention)
        self.dynamic_graph = MultiPerspectiveGraph(feature_dim, perspectives, top_k)
        self.graph_mix = WeightedSum(2, "learned")
        self.gcn = GCNStack([feature_dim, gcn_hidden, feature_dim])
        self.classifier = PerLabelClassifier(graph.num_classes, feature_dim)

    def forward(self, images: Tensor) -> Tensor:
        fused = self.channel_attention(self.reconstruct(self.project(self.backbone(images))))
        if self.label_queries is not None:
            queries = self.label_queries(self.label_embeddings)
        else:
            assert self.learned_queries is not None
            queries, _ = self.learned_queries()
        label_features = self.attend(queries, fused)  # [B, C, D]
        dynamic = self.dynamic_graph(label_features)
        adjacency = self.graph_mix([self.adjacency.expand_as(dynamic), dynamic])
        return self.classifier(label_features + self.gcn(label_features, adjacency))


@register_model("mgsgn")
def mgsgn(*, inputs: ModelInputs, knobs: MgsgnKnobs) -> nn.Module:
    """The paper fixes the mechanisms, not these sizes: 512-d features (as MSRN); cross-layer
    attention in a 128-d inner space with 4 heads (its key/value projection runs over every
    stride-8 location, the costliest piece of the head); 4 perspectives; SE's reduction 16; each
    label keeping its 8 nearest labels in the dynamic graph (`top_k: null` keeps all); a 512-wide
    hidden GCN layer; the reconstruction on the deepest map's own grid (`reconstruction_stride`
    32)."""
    return MGSGN(inputs.graph, inputs.backbone, inputs.pretrained, **knobs.model_dump())
