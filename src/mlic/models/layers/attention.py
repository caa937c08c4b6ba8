"""Attention over feature maps: label-guided spatial attention and map-to-map (cross) attention."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlic.knobs import Similarity

Normalisation = Literal["softmax", "relu"]


class LabelGuidedAttention(nn.Module):
    """Each label vector scores every location of a map and pools the locations it matches.

    This is the one mechanism all four research models share: MSRN and SGFN apply it at stages
    2–4 with their label semantics, MGSGN with projected label embeddings to get the per-image
    label representations `V`, and CMA-SGE as its Cross-Modality Attention. The variants differ
    only in how scores become weights:

    - `dot` + `softmax` (MSRN, SGFN, MGSGN): scaled dot product, softmax over locations;
    - `cosine` + `relu` (CMA-SGE, You et al. §3.3): cosine similarity, negatives cut by ReLU, the
      rest normalised to sum to one — a label absent from the image attends to nothing.

    `keys` decide *where* to look, `values` what is pooled; CMA-SGE looks in the projected
    (semantic) map but pools the visual one, the others pool the map they score.

    `smoothing` (relu only) spreads that much evidence evenly over the map before normalising.
    Plain ReLU-then-normalise divides by the label's total match, so a label that barely matches
    one location gets weight 1 there and a gradient of about 1/total (10⁴ and more), and a label
    that matches nowhere pools a zero vector that its classifier's bias alone must score. On a
    14×14 map that is rare; on the 3×3 map of a 96 px image it is one label–image pair in five at
    initialisation. With `smoothing` s the gradient stays below 1/s, a label that matches nowhere
    pools the plain average (what a global-pool head sees), and once matches add up to well over
    s the weights are the paper's. 0 keeps the plain normalisation.

    `cosine` + `softmax` (MSRN's and SGFN's `attention: cosine` knob) scales the cosines by a
    learned inverse temperature, starting at `temperature` and capped at `MAX_TEMPERATURE`. A dot
    product lets a query sharpen its softmax just by growing, and on the benchmark the shared
    queries grew to norms of 90–900 and turned one-hot (docs/models.md); a cosine bounds that, so
    the gradient goes into *where* a label looks, and one temperature for all labels sets how
    sharply.

    `channel` (MSRN's reference code, `attention: channel`) keeps one map per label *and channel*:
    the label vector scales each channel of the map, the product is softmax-normalised over the
    locations separately for every channel, and each channel is pooled with its own weights. A
    channel that a label weighs positively is pooled near where it peaks, a negatively weighted
    one near its minimum, and the label's length sets how sharply. Keys and values must be the
    same map. It does `B·C·D·N` work, where the other forms do `B·C·N` (`ChannelAttentionPool`
    says how it keeps that out of memory). `weights` reports the mean of a label's channel maps,
    the one map the diagnostics can read.
    """

    MAX_TEMPERATURE = 100.0

    def __init__(
        self,
        similarity: Similarity = "dot",
        normalisation: Normalisation = "softmax",
        smoothing: float = 0.0,
        temperature: float = 10.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.similarity = similarity
        self.normalisation = normalisation
        self.smoothing = smoothing
        self.eps = eps
        learned_temperature = similarity == "cosine" and normalisation == "softmax"
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature))) if learned_temperature else None

    def forward(self, labels: Tensor, keys: Tensor, values: Tensor | None = None) -> Tensor:
        """`labels` `[C, D]` or `[B, C, D]`, `keys` `[B, D, H, W]`, `values` `[B, Dv, H, W]` →
        label-specific features `[B, C, Dv]`."""
        if self.similarity == "channel":
            if values is not None:
                raise ValueError("channel attention pools the map it scores: pass no separate values")
            keys = keys.flatten(2)
            if torch.compiler.is_compiling():  # export and compile trace no Python loop over a batch
                return (self._channel_weights(labels, keys) * keys.unsqueeze(1)).sum(dim=-1)
            return ChannelAttentionPool.apply(labels, keys)  # [B, C, D]
        values = keys.flatten(2) if values is None else values.flatten(2)
        return torch.matmul(self.weights(labels, keys), values.transpose(1, 2))  # [B, C, Dv]

    @staticmethod
    def _channel_weights(labels: Tensor, keys: Tensor) -> Tensor:
        """`labels` `[C, D]` or `[B, C, D]`, flattened `keys` `[B, D, N]` → `[B, C, D, N]`."""
        return (labels.unsqueeze(-1) * keys.unsqueeze(1)).softmax(dim=-1)

    def weights(self, labels: Tensor, keys: Tensor) -> Tensor:
        """Each label's weights over the locations, `[B, C, H·W]`, summing to one (or to zero under
        plain ReLU normalisation, for a label that matches nowhere): what `forward` pools with, and
        what the attention diagnostics read."""
        keys = keys.flatten(2)  # [B, D, N]
        if self.similarity == "channel":
            return self._channel_weights(labels, keys).mean(dim=2)
        if self.similarity == "cosine":
            scores = torch.matmul(F.normalize(labels, dim=-1), F.normalize(keys, dim=1))
            if self.log_temperature is not None:
                scores = scores * self.log_temperature.clamp(max=math.log(self.MAX_TEMPERATURE)).exp()
        else:
            scores = torch.matmul(labels, keys) / math.sqrt(keys.shape[1])
        if self.normalisation == "softmax":
            return scores.softmax(dim=-1)
        positive = F.relu(scores) + self.smoothing / scores.shape[-1]
        return positive / (positive.sum(dim=-1, keepdim=True) + self.eps)


class ChannelAttentionPool(torch.autograd.Function):
    """Per-channel attention pooling, `out[b,c,d] = Σ_n softmax_n(l[c,d]·k[b,d,n]) · k[b,d,n]`,
    in chunks that fit in cache, with the weights recomputed in the backward pass.

    Why: written as broadcast ops, autograd keeps three `[B, C, D, N]` tensors per stage for the
    backward pass (MSRN on 21 labels at 96 px: 245 MB each for stage 2; on COCO at 448 px, 20 GB
    each) and streams each through memory several times; that made MSRN three times slower
    than the other models. Here no such tensor outlives a chunk of about `CHUNK_ELEMENTS`, and
    the gradients come in closed form from softmax-weighted moments of the keys: with
    `p = softmax(l·k)` and `m = Σ p·k`, `∂out/∂l = Σ p·k² − m²` and
    `∂out/∂k_n = p_n · (1 + l·(k_n − m))`. The max subtracted before `exp` is read off each
    channel's extremes (`l·k` is monotone in `k`), so no `[B, C, D, N]` pass is spent on it.
    Under CUDA autocast it computes in float32, as autocast runs softmax.
    """

    #: Elements of one chunk's `[b, D, c, N]` weights: 8 MB of float32 stays in a CPU's cache;
    #: a GPU wants few, large chunks and has the memory for them.
    CHUNK_ELEMENTS = {"cpu": 1 << 21, "cuda": 1 << 28}

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx: Any, labels: Tensor, keys: Tensor) -> Tensor:
        """`labels` `[C, D]` or `[B, C, D]`, flattened `keys` `[B, D, N]` → `[B, C, D]`."""
        ctx.save_for_backward(labels, keys)
        pooled = keys.new_empty(keys.shape[0], labels.shape[-2], keys.shape[1])
        for images, queries in _chunks(labels, keys):
            label_t, image_keys = _chunk_inputs(labels, keys, images, queries)
            sums = torch.matmul(_exponentials(label_t, image_keys), _powers(image_keys, 1))  # [b, D, c, 2]
            pooled[images, queries] = (sums[..., 0] / sums[..., 1]).transpose(1, 2)
        return pooled

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        labels, keys = ctx.saved_tensors
        grad_labels = torch.zeros(keys.shape[0], *labels.shape[-2:], dtype=keys.dtype, device=keys.device)
        grad_keys = torch.zeros_like(keys)
        for images, queries in _chunks(labels, keys):
            label_t, image_keys = _chunk_inputs(labels, keys, images, queries)
            weights = _exponentials(label_t, image_keys)  # [b, D, c, N], unnormalised
            sums = torch.matmul(weights, _powers(image_keys, 2))  # [b, D, c, 3]: Σ e·k, Σ e·k², Σ e
            total = sums[..., 2]
            mean, square = sums[..., 0] / total, sums[..., 1] / total
            chunk_grad = grad[images, queries].transpose(1, 2)  # [b, D, c]
            grad_labels[images, queries] = (chunk_grad * (square - mean * mean)).transpose(1, 2)
            coefficients = torch.stack((chunk_grad * (1 - label_t * mean), chunk_grad * label_t), dim=-2)
            direct, scaled = torch.matmul(coefficients / total.unsqueeze(-2), weights).unbind(-2)  # [b, D, N]
            grad_keys[images] += direct + image_keys * scaled
        return (grad_labels.sum(0) if labels.dim() == 2 else grad_labels), grad_keys


def _chunks(labels: Tensor, keys: Tensor) -> list[tuple[slice, slice]]:
    """(images, labels) slices covering the batch, each chunk's weights about `CHUNK_ELEMENTS`."""
    batch, channels, locations = keys.shape
    count = labels.shape[-2]
    budgets = ChannelAttentionPool.CHUNK_ELEMENTS
    budget = budgets.get(keys.device.type, budgets["cuda"])  # other accelerators: the GPU's
    per_image = channels * count * locations
    images = max(1, budget // per_image)
    queries = count if images > 1 else max(1, budget // (channels * locations))
    return [
        (slice(start, start + images), slice(first, first + queries))
        for start in range(0, batch, images)
        for first in range(0, count, queries)
    ]


def _chunk_inputs(labels: Tensor, keys: Tensor, images: slice, queries: slice) -> tuple[Tensor, Tensor]:
    """One chunk's labels as `[D, c]` (or `[b, D, c]`, one set per image) and keys `[b, D, N]`."""
    chunk = labels[queries] if labels.dim() == 2 else labels[images, queries]
    return chunk.transpose(-1, -2), keys[images]


def _exponentials(label_t: Tensor, keys: Tensor) -> Tensor:
    """`exp(l·k − max_n l·k)`, `[b, D, c, N]`: softmax's numerator, each row's largest term 1."""
    peak = torch.maximum(label_t * keys.amax(-1, keepdim=True), label_t * keys.amin(-1, keepdim=True))
    return torch.addcmul(-peak.unsqueeze(-1), label_t.unsqueeze(-1), keys.unsqueeze(2)).exp_()


def _powers(keys: Tensor, highest: int) -> Tensor:
    """`[b, D, N, highest + 1]`: the keys, their squares (`highest` 2), and ones, for one matmul
    with the weights to give every softmax moment the pooling needs."""
    powers = (keys, keys * keys) if highest == 2 else (keys,)
    return torch.stack([*powers, torch.ones_like(keys)], dim=-1)


class CrossAttention2d(nn.Module):
    """Every location of a query map attends to every location of a context map.

    With `context=None` it is a non-local block (Wang et al., CVPR 2018): global spatial
    correlation over one map — SGFN's Feature Aggregation Module. With a shallower context map it
    is MGSGN's cross-layer attention: the deepest map queries a finer one, so each of its
    locations pulls in the detail it lacks.

    The result is added to the query through a learned gate that starts at zero (as the non-local
    block zero-initialises its output), so the pretrained backbone's features pass unchanged at
    the start of training. `inner_dim` is rounded down to a multiple of `heads`, since the inner
    width is usually derived from a backbone's channel count.
    """

    def __init__(self, query_channels: int, context_channels: int, inner_dim: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        inner_dim = max(heads, inner_dim - inner_dim % heads)
        self.to_query = nn.Linear(query_channels, inner_dim, bias=False)
        self.to_key_value = nn.Linear(context_channels, 2 * inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, query_channels)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, query: Tensor, context: Tensor | None = None) -> Tensor:
        batch, channels, height, width = query.shape
        query_tokens = query.flatten(2).transpose(1, 2)  # [B, Nq, Dq]
        context_tokens = query_tokens if context is None else context.flatten(2).transpose(1, 2)
        q = self._split_heads(self.to_query(query_tokens))
        k, v = (self._split_heads(t) for t in self.to_key_value(context_tokens).chunk(2, dim=-1))
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, heads, Nq, d]
        attended = attended.transpose(1, 2).flatten(2)  # [B, Nq, inner]
        update = self.to_out(attended).transpose(1, 2).reshape(batch, channels, height, width)
        return query + self.gate * update

    def _split_heads(self, tokens: Tensor) -> Tensor:
        batch, length, width = tokens.shape
        return tokens.view(batch, length, self.heads, width // self.heads).transpose(1, 2)
