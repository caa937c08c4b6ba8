"""Is a model's label-guided attention still label-specific? The check for query collapse.

MSRN, SGFN, MGSGN and CMA-SGE ask `LabelGuidedAttention` with one query vector per label, so
that each label pools the locations where *its* object is. Nothing in their losses keeps the
queries apart: if training turns them all to one direction, every label attends to the same
locations and the branch is a shared saliency pooling read by per-label classifiers, whatever
its mAP. The quality bench measured exactly that (docs/models.md), so it reports this figure
beside mAP for every model, with a second one: how sharp each label's weights are. A dot-product
query can sharpen its softmax just by growing, until it reads a single location.

Neither figure says whether a label looks at *its own object*. The pointing game does: for each
positive (image, label) with a box, a hit when the label's attention peaks on that label's box.
Its control is the shared saliency — the mean of every label's map, one point for all labels —
so a model whose labels only share a saliency scores no better than its own control.

Nor do they say what the differences between the queries are worth. Averaging them does: the
trained model scored again with every label asking its attention the mean of all the queries
(`averaged_query_probabilities`). What the score loses is all that the label-specific part of
the queries contributes, however far apart they point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlic.evaluation.metrics import mean_average_precision
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


AttentionCall = Callable[[LabelGuidedAttention, Tensor, Tensor], None]


@torch.inference_mode()
def record_attention_calls(model: nn.Module, images: Tensor, record: AttentionCall) -> None:
    """One eval-mode forward pass of `images` with `record(attention, labels, keys)` called at
    every label-guided attention call, in the order the model makes them (a model without one
    never calls it). The model's mode is restored and the hooks removed, whatever happens."""
    attentions = [module for module in model.modules() if isinstance(module, LabelGuidedAttention)]
    handles = [
        attention.register_forward_pre_hook(lambda module, args: record(module, args[0], args[1]))
        for attention in attentions
    ]
    was_training = model.training
    try:
        model.eval()
        model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def probe_label_attention(model: nn.Module, images: Tensor) -> LabelAttentionProbe | None:
    """Measure the label-guided attention during one eval-mode forward pass of `images`; None for
    a model without it.

    Images matter for the entropy, and for MGSGN's query cosine (its queries are per image).
    """
    cosines: list[float] = []
    entropies: list[float] = []

    def record(attention: LabelGuidedAttention, labels: Tensor, keys: Tensor) -> None:
        cosines.append(mean_offdiagonal_cosine(labels))
        entropies.append(mean_normalised_entropy(attention.weights(labels, keys)))

    record_attention_calls(model, images, record)
    if not cosines:
        return None
    return LabelAttentionProbe(query_cosine=sum(cosines) / len(cosines), entropy=sum(entropies) / len(entropies))


# --- what are the differences between the queries worth? -------------------------------------


def mean_query(labels: Tensor) -> Tensor:
    """`[..., C, D]` queries → their mean, asked by every label (per image where they are per image)."""
    return labels.mean(dim=-2, keepdim=True).expand_as(labels)


def zero_query(labels: Tensor) -> Tensor:
    """`[..., C, D]` queries → zeros: every location (or channel's location) weighed alike."""
    return torch.zeros_like(labels)


@contextmanager
def queries_replaced(model: nn.Module, replace: Callable[[Tensor], Tensor] = mean_query) -> Iterator[bool]:
    """Inside, every label-guided attention of `model` is asked with `replace(queries)` instead
    of its queries; yields whether the model has any. The hooks are removed on exit, whatever
    happens."""

    def swap(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (replace(args[0]), *args[1:])

    attentions = [module for module in model.modules() if isinstance(module, LabelGuidedAttention)]
    handles = [attention.register_forward_pre_hook(swap) for attention in attentions]
    try:
        yield bool(handles)
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def eval_probabilities(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Eval-mode sigmoid probabilities `[N, C]` of `images`, in batches; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        batches = [model(images[start : start + batch_size]).float() for start in range(0, len(images), batch_size)]
        return torch.sigmoid(torch.cat(batches))
    finally:
        model.train(was_training)


def averaged_query_probabilities(model: nn.Module, images: Tensor) -> Tensor | None:
    """`eval_probabilities` with every label's query replaced by the mean query; None for a model
    without label-guided attention."""
    with queries_replaced(model, mean_query) as has_queries:
        return eval_probabilities(model, images) if has_queries else None


def distinct_query_map(model: nn.Module, images: Tensor, targets: np.ndarray) -> float | None:
    """Test mAP (points) with the model's own label queries minus with every query replaced by
    their mean, both scored here on the same images; None without label-guided attention."""
    averaged = averaged_query_probabilities(model, images)
    if averaged is None:
        return None
    own = eval_probabilities(model, images)
    return mean_average_precision(own.numpy(), targets) - mean_average_precision(averaged.numpy(), targets)


# --- the pointing game: does a label's attention fall on its own object? -------------------------


@dataclass(frozen=True)
class ImageBoxes:
    """One image's boxes per label index, in pixels of the image as stored (`[x, y, w, h]`)."""

    width: int
    height: int
    boxes: dict[int, list[list[float]]]


def pointing_hit(attention_map: Tensor, boxes: list[list[float]], width: int, height: int, dilation: int = 1) -> bool:
    """Whether the arg-max cell of an `[H, W]` map lies in a cell that one of `boxes` covers, with
    the covered cells grown by `dilation` cells: at 3×3 or 6×6 a box's edge and the cell grid
    rarely line up, and an object half a cell away is still the object."""
    rows, cols = attention_map.shape
    peak = int(attention_map.flatten().argmax())
    row, col = divmod(peak, cols)
    for x, y, box_width, box_height in boxes:
        first_col = math.floor(x / width * cols) - dilation
        last_col = math.ceil((x + box_width) / width * cols) - 1 + dilation
        first_row = math.floor(y / height * rows) - dilation
        last_row = math.ceil((y + box_height) / height * rows) - 1 + dilation
        if first_row <= row <= last_row and first_col <= col <= last_col:
            return True
    return False


@dataclass(frozen=True)
class PointingGame:
    """Hits in % of the positive (image, label) pairs with a box, per attention call (a stage or
    scale, in the order the model runs them), for the labels' own maps and for the shared
    saliency (the mean of every label's map: the same point for all labels)."""

    per_stage: list[float]
    shared_saliency: list[float]
    pairs: int

    @property
    def mean(self) -> float:
        return sum(self.per_stage) / len(self.per_stage)

    @property
    def shared_mean(self) -> float:
        return sum(self.shared_saliency) / len(self.shared_saliency)


def label_maps(model: nn.Module, images: Tensor, num_classes: int) -> list[Tensor]:
    """Every label-guided attention call of one eval-mode forward pass → the label maps
    `[B, C, H, W]`, in call order. Group queries after the first C are left out; a single
    shared query stands for every label."""
    calls: list[Tensor] = []

    def record(attention: LabelGuidedAttention, labels: Tensor, keys: Tensor) -> None:
        weights = attention.weights(labels, keys)[:, :num_classes]
        calls.append(weights.expand(-1, num_classes, -1).reshape(*weights.shape[:1], num_classes, *keys.shape[-2:]))

    record_attention_calls(model, images, record)
    return calls


def pointing_game(
    model: nn.Module, images: Tensor, boxes: list[ImageBoxes], num_classes: int, batch_size: int = 32
) -> PointingGame | None:
    """The pointing game over `images` (as evaluation sees them) and their boxes; None for a
    model without label-guided attention or data without boxes."""
    hits: list[list[int]] = []
    shared_hits: list[list[int]] = []
    pairs = 0
    for start in range(0, len(images), batch_size):
        calls = label_maps(model, images[start : start + batch_size], num_classes)
        if not calls:
            return None
        if not hits:
            hits, shared_hits = [[] for _ in calls], [[] for _ in calls]
        for offset, image in enumerate(boxes[start : start + batch_size]):
            pairs += len(image.boxes)
            for stage, maps in enumerate(calls):
                shared = maps[offset].mean(dim=0)  # one saliency for every label of this image
                for label, label_boxes in image.boxes.items():
                    hits[stage].append(pointing_hit(maps[offset, label], label_boxes, image.width, image.height))
                    shared_hits[stage].append(pointing_hit(shared, label_boxes, image.width, image.height))
    if not pairs:
        return None
    return PointingGame(
        per_stage=[100.0 * sum(stage) / pairs for stage in hits],
        shared_saliency=[100.0 * sum(stage) / pairs for stage in shared_hits],
        pairs=pairs,
    )
