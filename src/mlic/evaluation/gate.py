"""The mAP gate: choose the architecture to ship on the validation split, gate it on the test split.

Choosing on test would bias the shipped model's test figure upward (the maximum of several noisy
estimates), so the test split only measures the model that validation chose; that test mAP is
what is reported and what must clear `evaluate.min_map`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

#: The metrics keys of the two figures: `mAP` is the test split's, `val_mAP` the validation split's.
TEST_MAP, VAL_MAP = "mAP", "val_mAP"


@dataclass(frozen=True)
class GateDecision:
    best_arch: str
    #: The split whose mAP chose `best_arch`: "val", or "test" when no architecture has a val mAP.
    chosen_by: Literal["val", "test"]
    #: `best_arch`'s mAP on that split.
    chosen_map: float
    #: `best_arch`'s test mAP: the figure the gate compares with `min_map`.
    test_map: float
    min_map: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.test_map) and self.test_map >= self.min_map


def decide(per_arch: dict[str, dict[str, float]], min_map: float) -> GateDecision:
    """Highest val mAP wins, its test mAP is gated; ties go to the architecture listed first.

    Without a finite val mAP anywhere (an empty val split) the choice falls back to test mAP, with
    a warning: the run can still ship, but its test figure is then optimistic.
    """
    chosen_by: Literal["val", "test"] = "val"
    if not any(math.isfinite(metrics[VAL_MAP]) for metrics in per_arch.values()):
        log.warning(
            "no architecture has a val mAP (empty val split?): choosing by test mAP, "
            "so the chosen model's test mAP is biased upward"
        )
        chosen_by = "test"
    key = VAL_MAP if chosen_by == "val" else TEST_MAP
    finite = {arch: metrics[key] for arch, metrics in per_arch.items() if math.isfinite(metrics[key])}
    if not finite:
        first = next(iter(per_arch))
        return GateDecision(first, chosen_by, float("nan"), per_arch[first][TEST_MAP], min_map)
    best_arch = max(finite, key=finite.__getitem__)  # max keeps the first of equal values: listing order
    return GateDecision(best_arch, chosen_by, finite[best_arch], per_arch[best_arch][TEST_MAP], min_map)
