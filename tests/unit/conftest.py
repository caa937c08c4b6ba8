from __future__ import annotations

from pathlib import Path

import pytest
from prepared_data import make_prepared, tiny_params

from mlic.config import config_from_dict
from mlic.paths import Paths


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A project root holding a small prepared dataset (data/prepared/)."""
    make_prepared(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_config():
    """Parameters for quick CPU runs: resnet18 at 32 px, 2 epochs, word vectors from a file."""

    def build(root: Path, **sections):
        return config_from_dict(tiny_params(root, **sections))

    return build


@pytest.fixture
def tiny_paths(tiny_root: Path) -> Paths:
    return Paths(tiny_root)
