"""CMA-SGE — Cross-Modality Attention with Semantic Graph Embedding (You et al., AAAI 2020).

1. ASGE (Adjacency-based Similarity Graph Embedding): label embeddings trained so that their
   pairwise cosine similarities reproduce the label adjacency — co-occurring labels point the
   same way in the semantic space.
2. CMT (Cross-Modality Transformation): 1×1 convs carry the last feature map into that space.
3. CMA (Cross-Modality Attention): label k's attention map is the ReLU'd cosine between its
   embedding and every projected location, normalised; it weights an average of the *visual*
   features → one category-wise feature per label → per-label classifier. A little evidence is
   spread over every location first (`attention_smoothing`): see `LabelGuidedAttention`.
4. The logits are the average of this attention branch and a global-pool branch.

`scales` > 1 is the paper's multi-scale variant (MS-CMA, the one behind its headline COCO 83.8
and NUS-WIDE 61.4): CMA runs on several backbone stages (strides 16 and 32 for 2, 8/16/32 for
3), each with its own CMT and per-label classifier but the same ASGE label embeddings, and the
attention branch is the mean of the per-scale logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlic.graph.label_graph import LabelGraph
from mlic.knobs import CmaScales, CmasgeKnobs, FeatureStride, LabelGraphInput, QuerySource
from mlic.models.layers import (
    STAGES_2_TO_4,
    Backbone,
    ConvProjection,
    GlobalPoolClassifier,
    LabelGuidedAttention,
    LearnedQueries,
    PerLabelClassifier,
    PretrainedWeights,
    WeightedSum,
    register_graph_buffers,
)
from mlic.models.registry import ModelInputs, register_model


class AdjacencySimilarityEmbedding(nn.Module):
    """ASGE: an encoder from the word embeddings to the label embeddings used by CMA.

    The paper fits these embeddings to the graph before training; here they are fitted jointly,
    from the first step, by `loss` (weighted into the model's auxiliary loss) — so the whole
    model stays one module rebuilt from its state_dict, with no separate fitting stage.

    The layers have no bias: sentence embeddings are unit vectors (entries ~0.05), and a default
    bias is as large as the signal, so biased layers start every label at nearly the same
    embedding (off-diagonal cosine 0.91 on the demo labels, 0.30 between their word vectors):
    every label would attend to the same locations until the ASGE loss pulled them apart.
    Without bias the encoder is positively homogeneous and starts near the words' geometry.
    """

    def __init__(self, embedding_dim: int, hidden_dim: int, dim: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Linear(embedding_dim, hidden_dim, bias=False), nn.LeakyReLU(0.2), nn.Linear(hidden_dim, dim, bias=False)
        )

    def forward(self, word_embeddings: Tensor) -> Tensor:
        return self.encode(word_embeddings)

    @staticmethod
    def loss(label_embeddings: Tensor, adjacency: Tensor) -> Tensor:
        """Mean squared gap between `cos(e_i, e_j)` and the target adjacency over pairs i ≠ j.

        The target is the static adjacency's off-diagonal scaled so its strongest edge is 1:
        the normalised graph's weights are small (p spread over neighbours), and unscaled they
        would ask co-occurring labels to be nearly orthogonal. The diagonal is left out — a
        cosine with itself is always 1.
        """
        unit = F.normalize(label_embeddings, dim=-1)
        cosine = unit @ unit.t()
        off_diagonal = 1.0 - torch.eye(adjacency.shape[0], dtype=adjacency.dtype, device=adjacency.device)
        edges = adjacency * off_diagonal
        target = edges / edges.max().clamp_min(1e-12)
        return ((cosine - target).pow(2) * off_diagonal).sum() / off_diagonal.sum().clamp_min(1.0)


class CrossModalityTransformation(nn.Sequential):
    """CMT: 1×1 conv → BN → ReLU → 1×1 conv into the semantic space. The last conv has no ReLU,
    so projected locations can point anywhere in that space, as label embeddings do."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__(ConvProjection(in_channels, dim), nn.Conv2d(dim, dim, kernel_size=1))


class CMASGE(nn.Module):
    def __init__(
        self,
        graph: LabelGraph,
        backbone: str,
        pretrained: PretrainedWeights | None,
        *,
        semantic_dim: int,
        asge_hidden: int,
        asge_weight: float,
        attention_smoothing: float,
        feature_stride: FeatureStride,
        scales: CmaScales,
        label_graph: LabelGraphInput,
        queries: QuerySource,
    ) -> None:
        super().__init__()
        if scales == 1:
            self.backbone = Backbone.deepest(backbone, pretrained, feature_stride)
        else:
            self.backbone = Backbone(backbone, strides=STAGES_2_TO_4[-scales:], pretrained=pretrained)
        register_graph_buffers(self, graph, label_graph)
        self.asge = (
            AdjacencySimilarityEmbedding(graph.embedding_dim, asge_hidden, semantic_dim)
            if queries == "semantic"
            else None
        )
        self.learned_queries = LearnedQueries(graph.num_classes, semantic_dim) if queries == "learned" else None
        self.cmt = nn.ModuleList(CrossModalityTransformation(c, semantic_dim) for c in self.backbone.channels)
        self.cma = LabelGuidedAttention(similarity="cosine", normalisation="relu", smoothing=attention_smoothing)
        self.attention_classifiers = nn.ModuleList(
            PerLabelClassifier(graph.num_classes, c) for c in self.backbone.channels
        )
        self.global_head = GlobalPoolClassifier(self.backbone.out_channels, graph.num_classes)
        self.fuse_scales = WeightedSum(scales, "mean")
        self.fuse = WeightedSum(2, "mean")
        self.asge_weight = asge_weight

    def forward(self, images: Tensor) -> Tensor:
        feature_maps = self.backbone(images)
        label_embeddings = self.label_queries()
        scale_logits = [
            classify(self.cma(label_embeddings, transform(features), values=features))
            for transform, classify, features in zip(self.cmt, self.attention_classifiers, feature_maps, strict=True)
        ]
        return self.fuse([self.fuse_scales(scale_logits), self.global_head(feature_maps[-1])])

    def label_queries(self) -> Tensor:
        """The `[C, D]` label embeddings CMA attends with: ASGE's, or free ones (`queries: learned`)."""
        if self.asge is not None:
            return self.asge(self.label_embeddings)
        assert self.learned_queries is not None
        return self.learned_queries()[0]

    def auxiliary_loss(self) -> Tensor:
        """The ASGE loss, image-independent (C×C cosines); zero for free queries, which are not
        fitted to the graph (that is what the control leaves out)."""
        if self.asge is None:
            return self.adjacency.new_zeros(())
        return self.asge_weight * AdjacencySimilarityEmbedding.loss(self.label_queries(), self.adjacency)


@register_model("cmasge")
def cmasge(*, inputs: ModelInputs, knobs: CmasgeKnobs) -> nn.Module:
    """The paper leaves the semantic width and the ASGE fitting schedule open: 256-d label
    embeddings from a one-hidden-layer (512) encoder, fitted jointly with weight 1.
    `attention_smoothing` 0 is the paper's plain ReLU normalisation; 1.0 (params.yaml) is one fully
    matching location's worth of evidence spread over the map: a matched label on the paper's
    14×14 maps adds up far more, so there it changes little; on the demo's 3×3 maps it is what
    keeps the attention branch trainable. `scales` 1 is the CMA of the paper's method section; 2–3 its MS-CMA (module
    docstring). A dilated last stage (`feature_stride` 16) is for the single-scale model only."""
    return CMASGE(inputs.graph, inputs.backbone, inputs.pretrained, **knobs.model_dump())
