"""Fusing parallel branches: weighted sums of predictions/maps, and local + global semantics."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlic.knobs import BranchFusion, SemanticCombine


class WeightedSum(nn.Module):
    """Combine same-shaped branch outputs.

    `sum` and `mean` are fixed (MSRN's summed layer logits, CMA-SGE's average of its two
    branches); `learned` is a softmax over one learned scalar per branch, starting equal — the
    adaptive weighting of SGFN's layer predictions and MGSGN's dual-branch channel attention.
    """

    def __init__(self, num_branches: int, mode: BranchFusion = "learned") -> None:
        super().__init__()
        self.mode = mode
        self.logits = nn.Parameter(torch.zeros(num_branches)) if mode == "learned" else None

    def forward(self, branches: list[Tensor]) -> Tensor:
        stacked = torch.stack(branches)
        if self.logits is not None:
            weights = self.logits.softmax(dim=0).view(-1, *([1] * (stacked.dim() - 1)))
            return (weights * stacked).sum(dim=0)
        return stacked.sum(dim=0) if self.mode == "sum" else stacked.mean(dim=0)


class SemanticFusion(nn.Module):
    """Combine each label's local semantics `[C, D]` with global semantics (`[C, D]`, or one
    `[D]` vector shared by all labels): MSRN's local + group semantics, SGFN's local + global.

    `sum` adds them; `concat` concatenates and projects back to D, learning how much of each.
    """

    def __init__(self, dim: int, mode: SemanticCombine = "concat") -> None:
        super().__init__()
        self.project = nn.Linear(2 * dim, dim) if mode == "concat" else None

    def forward(self, local: Tensor, global_: Tensor) -> Tensor:
        global_ = global_.expand_as(local)
        if self.project is None:
            return local + global_
        return self.project(torch.cat([local, global_], dim=-1))
