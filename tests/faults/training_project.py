"""A tiny project ready to train (prepared data and label graph) and what the fault tests compare."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from prepared_data import make_prepared, tiny_params

from mlic.config import config_from_dict
from mlic.paths import Paths
from mlic.steps import graph as graph_step

#: Two short epochs of the baseline: a checkpoint to resume from, and one more to write.
TRAIN = {"epochs": 2, "max_steps_per_epoch": 2}
ARCH = "baseline"


def ready_project(root: Path) -> tuple[dict[str, Any], Paths]:
    """(params, paths) of a project under `root` with prepared data and its label graph."""
    make_prepared(root)
    params = tiny_params(root, architectures=[ARCH], train=TRAIN)
    paths = Paths(root)
    graph_step.run(config_from_dict(params), paths)
    return params, paths


def weights(paths: Paths) -> dict[str, torch.Tensor]:
    return torch.load(paths.model_dir(ARCH) / "weights.pt", weights_only=True)


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def history(paths: Paths) -> list[dict[str, Any]]:
    """Per-epoch loss and val mAP from training.json (durations differ between runs: left out)."""
    epochs = json.loads((paths.model_dir(ARCH) / "training.json").read_text())["history"]
    return [{key: value for key, value in epoch.items() if key != "seconds"} for epoch in epochs]


def curve(paths: Paths, metric: str) -> list[tuple[int, float]]:
    """(step, value) of one dvclive curve of the baseline's training."""
    tsv = paths.train_logs(ARCH) / "plots" / "metrics" / f"{metric}.tsv"
    with tsv.open() as handle:
        return [(int(row["step"]), float(row[metric.split("/")[-1]])) for row in csv.DictReader(handle, delimiter="\t")]


@dataclass(frozen=True)
class Finished:
    """What an uninterrupted run ends with (training is deterministic on CPU)."""

    weights: dict[str, torch.Tensor]
    checkpoint: bytes
    history: list[dict[str, Any]]
