"""Fixtures of the fault-injection tests: a project ready to train, and an uninterrupted run's result."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_project import ARCH, Finished, history, ready_project, weights

from mlic.config import Config, config_from_dict
from mlic.paths import Paths


@pytest.fixture
def project(tmp_path: Path) -> tuple[Config, Paths]:
    params, paths = ready_project(tmp_path)
    return config_from_dict(params), paths


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    from mlic.steps import train as train_step

    params, paths = ready_project(tmp_path_factory.mktemp("uninterrupted"))
    train_step.run(config_from_dict(params), paths, ARCH)
    return Finished(weights(paths), paths.checkpoint_file(ARCH).read_bytes(), history(paths))
