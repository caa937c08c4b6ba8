"""Is a model's label-guided attention still label-specific? The check for query collapse.

MSRN, SGFN, MGSGN and CMA-SGE ask `LabelGuidedAttention` with one query vector per label, so
that each label pools the locations where *its* object is. Nothing in their losses keeps the
queries apart: if training turns them all to one direction, every label attends to the same
locations and the branch is a shared saliency pooling read by per-label classifiers, whatever
its mAP. The quality bench measured exactly that (docs/models.md), so it reports this figure
beside mAP for every model, with a second one: how sharp each label's weights are. A dot-product
query can sharpen its softmax just by growing, until it reads a single location.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlic.models.layers.attention import LabelGuidedAttention


def mean_offdiagonal_cosine(vectors: Tensor) -> float:
    """`[C, D]` or `[B, C, D]` → mean cosine between different rows (per sample, then averaged)."""
    unit = F.normalize(vectors.float().reshape(-1, *vectors.shape[-2:]), dim=-1)
    cosine = unit @ unit.transpose(-1, -2)
    count = cosine.shape[-1]
    offdiagonal = ~torch.eye(count, dtype=torch.bool, device=cosine.device)
    return float(cosine[:, offdiagonal].mean())


def mean_normalised_entropy(weights: Tensor) -> float:
    """`[..., N]` rows of weights over N locations → mean entropy as a fraction of log N: 1.0 for
    uniform weights (a global average pool), 0.0 for one-hot ones (a single location)."""
    weights = weights.float()
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(dim=-1)
    return float(entropy.mean() / math.log(weights.shape[-1])) if weights.shape[-1] > 1 else 0.0


@dataclass(frozen=True)
class LabelAttentionProbe:
    """How label-specific and how sharp a model's label-guided attention is, averaged over every
    `LabelGuidedAttention` it has."""

    #: Mean off-diagonal cosine of the label queries: about 0 for labels that look for different
    #: things, 1.0 when all labels ask the same question.
    query_cosine: float
    #: Mean entropy of each label's weights over the locations, as a fraction of the uniform
    #: one: near 0 means each label reads one location, and whichever one a query locked onto
    #: early in training decides what the branch sees.
    entropy: float


@torch.inference_mode()
def probe_label_attention(model: nn.Module, images: Tensor) -> LabelAttentionProbe | None:
    """Measure the label-guided attention during one eval-mode forward pass of `images`; None for
    a model without it. The model's mode is restored and the probe's hooks removed.

    Images matter for the entropy, and for MGSGN's query cosine (its queries are per image).
    """
    cosines: list[float] = []
    entropies: list[float] = []

    def record(attention: LabelGuidedAttention, args: tuple[Tensor, ...]) -> None:
        labels, keys = args[0], args[1]
        cosines.append(mean_offdiagonal_cosine(labels))
        entropies.append(mean_normalised_entropy(attention.weights(labels, keys)))

    attentions = [module for module in model.modules() if isinstance(module, LabelGuidedAttention)]
    handles = [attention.register_forward_pre_hook(record) for attention in attentions]
    was_training = model.training
    try:
        model.eval()
        model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not cosines:
        return None
    return LabelAttentionProbe(query_cosine=sum(cosines) / len(cosines), entropy=sum(entropies) / len(entropies))
