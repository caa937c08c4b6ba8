from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prepared_data import LABELS, make_prepared  # noqa: E402

from mlic.config import config_from_dict  # noqa: E402
from mlic.paths import Paths  # noqa: E402


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A project root holding a small prepared dataset (data/prepared/)."""
    make_prepared(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_config():
    """Parameters for quick CPU runs: resnet18 at 32 px, 2 epochs, word vectors from a file."""

    def build(root: Path, **sections):
        vectors = root / "vectors.txt"
        rng = np.random.default_rng(0)
        vectors.write_text("".join(f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=16)) + "\n" for w in LABELS))
        raw = {
            "architectures": ["baseline", "mlgcn"],
            "graph": {"embeddings": {"source": "file", "path": str(vectors)}},
            "train": {"image_size": 32, "epochs": 2, "batch_size": 8, "lr": 0.003},
            "models": {"mlgcn": {"hidden_dim": 32}},
            "evaluate": {"min_map": 0.0},
        }
        for key, value in sections.items():
            raw.setdefault(key, {})
            raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
        return config_from_dict(raw)

    return build


@pytest.fixture
def tiny_paths(tiny_root: Path) -> Paths:
    return Paths(tiny_root)
