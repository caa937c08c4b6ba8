"""DDP through torchrun on CPU (gloo): two ranks train one model, rank 0 alone writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from prepared_data import LABELS, make_prepared
from torch.utils.data import DataLoader

from mlic.config import config_from_dict
from mlic.data.dataset import MultiLabelDataset
from mlic.data.transforms import eval_transform
from mlic.evaluation.metrics import mean_average_precision
from mlic.evaluation.predict import predict_probabilities
from mlic.models.saved import load_model
from mlic.paths import Paths
from mlic.steps import graph as graph_step

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _params(root: Path, world: int) -> dict:
    vectors = root / "vectors.txt"
    vectors.write_text(
        "".join(f"{w} " + " ".join(str((i * 7 + j) % 5 - 2) for j in range(8)) + "\n" for i, w in enumerate(LABELS))
    )
    return {
        "architectures": ["baseline"],
        "graph": {"embeddings": {"source": "file", "path": str(vectors)}},
        # batch_size is per rank: keep the global batch (and so the optimizer steps) equal across worlds
        "train": {"image_size": 32, "epochs": 6, "batch_size": 8 // world, "lr": 0.003},
        "evaluate": {"min_map": 0.0},
    }


def _train(root: Path, nproc: int) -> dict:
    command = [
        str(BIN / "python"),
        "-m",
        "mlic",
        "train",
        "--arch",
        "baseline",
        "--root",
        str(root),
        "--params",
        str(root / "params.yaml"),
    ]
    if nproc > 1:
        command = [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={nproc}", "-m", "mlic", *command[3:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((root / "artifacts/models/baseline/training.json").read_text())


@pytest.mark.parametrize("nproc", [2])
def test_two_rank_gloo_run_trains_one_model_in_range_of_one_process(tmp_path: Path, nproc: int) -> None:
    summaries = {}
    for world in (1, nproc):
        root = tmp_path / f"world{world}"
        make_prepared(root, {"train": 48, "val": 24, "test": 12})
        params = _params(root, world)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        graph_step.run(config_from_dict(params), Paths(root))
        summaries[world] = _train(root, world)
        models = list((root / "artifacts/models").iterdir())
        assert [m.name for m in models] == ["baseline"]  # one writer: no rank-suffixed leftovers
    assert summaries[nproc]["world_size"] == nproc
    assert summaries[1]["world_size"] == 1
    # same data, same global batch and steps: the DDP run learns as well as one process, within noise
    assert abs(summaries[nproc]["val_mAP"] - summaries[1]["val_mAP"]) < 15
    assert summaries[nproc]["train_loss"] < 0.69  # below chance-level BCE: it learned
    # each rank scored its shard of the val split: put together, they give the saved model's val mAP
    assert summaries[nproc]["val_mAP"] == pytest.approx(_val_map(tmp_path / f"world{nproc}"), abs=1e-6)


def _val_map(root: Path) -> float:
    """The val mAP of the model `mlic train` saved under `root`, scored by one process."""
    paths = Paths(root)
    model, spec = load_model(paths.model_dir("baseline"))
    val = MultiLabelDataset(paths.split_file("val"), spec["num_classes"], eval_transform(spec["image_size"]))
    scores, targets = predict_probabilities(model, DataLoader(val, batch_size=8), torch.device("cpu"))
    return mean_average_precision(scores, targets, spec["label_names"])
