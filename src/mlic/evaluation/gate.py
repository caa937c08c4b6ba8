"""The mAP gate: pick the best architecture and decide whether it may ship."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    best_arch: str
    best_map: float
    min_map: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.best_map) and self.best_map >= self.min_map


def decide(per_arch: dict[str, dict[str, float]], min_map: float) -> GateDecision:
    """Highest test mAP wins; ties go to the architecture listed first (stable, predictable)."""
    finite = {arch: m["mAP"] for arch, m in per_arch.items() if math.isfinite(m["mAP"])}
    if not finite:
        first = next(iter(per_arch))
        return GateDecision(first, float("nan"), min_map)
    best_arch = max(finite, key=lambda arch: (finite[arch], -list(per_arch).index(arch)))
    return GateDecision(best_arch, finite[best_arch], min_map)
