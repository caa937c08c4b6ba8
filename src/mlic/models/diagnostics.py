"""Is a model's label-guided attention still label-specific? The check for query collapse.

MSRN, SGFN, MGSGN and CMA-SGE ask `LabelGuidedAttention` with one query vector per label, so
that each label pools the locations where *its* object is. Nothing in their losses keeps the
queries apart: if training turns them all to one direction, every label attends to the same
locations and the branch is a shared saliency pooling read by per-label classifiers, whatever
its mAP. The quality bench measured exactly that (docs/models.md), so it reports this figure
beside mAP for every model.
"""

from __future__ import annotations

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


@torch.inference_mode()
def label_query_cosine(model: nn.Module, images: Tensor) -> float | None:
    """Mean off-diagonal cosine of the label queries over every `LabelGuidedAttention` in one
    forward pass of `images`: about 0 for labels that look for different things, 1.0 when all
    labels ask the same question. None for a model without label-guided attention.

    Images matter for MGSGN only, whose queries are per image; the others' are image-independent.
    """
    measured: list[float] = []

    def record(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        measured.append(mean_offdiagonal_cosine(args[0]))

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
    return sum(measured) / len(measured) if measured else None
