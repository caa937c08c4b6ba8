"""train step: one architecture on the prepared data and the label graph → artifacts/models/<arch>/."""

from __future__ import annotations

from mlic.config import Config
from mlic.paths import Paths
from mlic.training.loop import TrainResult, train


def run(config: Config, paths: Paths, arch: str) -> TrainResult | None:
    """Train `arch` with `models.<arch>`: whether `architectures` lists it is not this stage's
    business (DVC's foreach and the pipeline only run listed ones), so the list is not read."""
    return train(config, paths, arch)
