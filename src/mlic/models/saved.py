"""A trained model on disk: `weights.pt` (state_dict only) + `config.json` (the model spec).

Loading uses `torch.load(weights_only=True)` and rebuilds the module from the spec, so no
pickled code is ever executed — the same format serves training, evaluation and TorchServe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlic.errors import DataError
from mlic.io import atomic_path, read_json, write_json
from mlic.models.registry import build_from_spec

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"


def save_model(directory: Path, model: nn.Module, spec: dict[str, Any]) -> Path:
    """Write weights then config, each atomically (config last: its presence marks completeness).

    torch.save writes through our file handle so a full disk surfaces as the OSError it is, which
    atomic_path turns into a StorageError naming weights.pt (given a path, torch reports it as an
    opaque RuntimeError from its zip writer).
    """
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)
    write_json(directory / CONFIG_FILE, spec)
    return directory


def load_spec(directory: Path) -> dict[str, Any]:
    return read_json(directory / CONFIG_FILE, what="model config")


def load_model(directory: Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the module from config.json and load weights.pt strictly; eval mode."""
    spec = load_spec(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise DataError("model weights not found", file=weights, fix="re-run `mlic train` for this architecture")
    model = build_from_spec(spec)
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataError(f"weights do not load into the model ({exc})", file=weights, fix="re-train the model") from exc
    return model.eval(), spec
