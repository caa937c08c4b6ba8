"""train step: one architecture on the prepared data and the label graph → artifacts/models/<arch>/."""

from __future__ import annotations

from mlic.config import Config
from mlic.errors import ConfigError
from mlic.paths import Paths
from mlic.training.loop import TrainResult, train


def run(config: Config, paths: Paths, arch: str) -> TrainResult | None:
    if arch not in config.architectures:
        raise ConfigError(
            f"architecture '{arch}' is not in the architectures list",
            field="architectures",
            fix=f"add it to params.yaml architectures (now: {', '.join(config.architectures)})",
        )
    return train(config, paths, arch)
