"""The whole Kubeflow pipeline with kfp.local, on a tiny synthetic set: the same components and code
a cluster runs, every task a subprocess of this environment."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlic.cli import app
from mlic.config import config_from_dict
from mlic.data.canonical import load_split
from mlic.kubeflow.local import LocalRun, run_local
from mlic.serving.archive import read_properties

pytestmark = pytest.mark.slow

ARCHITECTURES = ["baseline", "mlgcn"]
TINY = {
    "architectures": ARCHITECTURES,
    "data": {"synthetic": {"num_images": 60, "image_size": 32}},
    "validate": {"min_positives": 1},
    "train": {"image_size": 32, "epochs": 1, "batch_size": 16, "max_steps_per_epoch": 2},
    "models": {"baseline": {"dropout": 0.0}, "mlgcn": {"hidden_dim": 64, "pool": "max"}},
    "evaluate": {"min_map": 0.0},
}


def task_output(run: LocalRun, task: str, output: str) -> Path:
    (found,) = run.run_dir.glob(f"**/{task}/{output}")
    return found


@pytest.fixture(scope="module")
def run_with_root_handlers(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[LocalRun, list[logging.Handler], list[logging.Handler]]:
    """The run, and the root logger's handlers before and after it (kfp.local rewires them)."""
    params_json = json.dumps(config_from_dict(TINY).to_dict())
    before = logging.getLogger().handlers[:]
    run = run_local(params_json, {}, tmp_path_factory.mktemp("kfp-local"))
    return run, before, logging.getLogger().handlers[:]


@pytest.fixture(scope="module")
def passed_run(run_with_root_handlers: tuple[LocalRun, list[logging.Handler], list[logging.Handler]]) -> LocalRun:
    return run_with_root_handlers[0]


def test_run_leaves_the_root_logger_as_it_found_it(
    run_with_root_handlers: tuple[LocalRun, list[logging.Handler], list[logging.Handler]],
) -> None:
    # A handler left behind writes every later log line to the run's stderr, closed by then.
    _, before, after = run_with_root_handlers
    assert after == before


def test_every_step_leaves_its_artifact(passed_run: LocalRun) -> None:
    assert json.loads(task_output(passed_run, "fetch-data", "data/fetch.json").read_text())["repo_url"] == ""
    prepared = task_output(passed_run, "prepare", "prepared") / "data" / "prepared"
    train_split = load_split(prepared / "train.json")
    assert train_split.records and all(train_split.image_path(r).is_file() for r in train_split.records)
    assert "<html" in task_output(passed_run, "validate", "report").read_text().lower()
    assert (task_output(passed_run, "validate", "validation") / "metrics" / "data.json").is_file()
    assert (task_output(passed_run, "graph", "graph") / "artifacts" / "graph" / "graph.npz").is_file()
    models = sorted(
        path.parent.name for path in passed_run.run_dir.glob("**/train/model/artifacts/models/*/weights.pt")
    )
    assert models == ARCHITECTURES


def test_metrics_artifact_has_the_map_of_every_architecture(passed_run: LocalRun) -> None:
    for arch in ARCHITECTURES:
        assert 0.0 <= passed_run.metrics[f"{arch}.mAP"] <= 100.0
    assert passed_run.metrics["best_mAP"] == max(passed_run.metrics[f"{arch}.mAP"] for arch in ARCHITECTURES)
    assert passed_run.gate_passed and passed_run.metrics["gate_passed"] == 1.0
    assert all(arch in passed_run.evaluation_table for arch in ARCHITECTURES)
    evaluation = task_output(passed_run, "evaluate", "evaluation")
    assert json.loads((evaluation / "artifacts" / "best.json").read_text())["arch"] in ARCHITECTURES


def test_gate_passed_packages_a_kserve_ready_model(passed_run: LocalRun) -> None:
    assert passed_run.model_archive is not None
    assert (passed_run.model_archive / "model-store" / "mlic.mar").stat().st_size > 0
    properties = read_properties(passed_run.model_archive / "config" / "config.properties")
    assert properties["model_store"] == "/mnt/models/model-store"
    assert properties["load_models"] == "mlic=mlic.mar"
    assert properties["inference_address"] == "http://127.0.0.1:8080"  # loopback: only the pod's queue-proxy reaches it
    assert properties["enable_model_api"] == "false"


def test_map_floor_above_reach_skips_packaging(tmp_path: Path) -> None:
    overrides = [f"{key}={value}" for key, value in (
        ("architectures", "[baseline,mlgcn]"), ("data.synthetic.num_images", 60), ("data.synthetic.image_size", 32),
        ("validate.min_positives", 1), ("train.image_size", 32), ("train.epochs", 1), ("train.batch_size", 16),
        ("train.max_steps_per_epoch", 2), ("models.mlgcn.hidden_dim", 64), ("evaluate.min_map", 100.0),
    )]  # fmt: skip
    params = Path(__file__).resolve().parents[2] / "params.yaml"
    args = ["pipeline", "run-local", "--params", str(params), "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, *[item for override in overrides for item in ("--set", override)]])
    assert result.exit_code == 0, result.output
    assert "not packaged: the mAP gate failed" in result.output
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "evaluate" / "table").is_file()
    assert not list(run_dir.glob("**/package"))
    assert not list(run_dir.glob("**/evaluation/artifacts/best.json"))
