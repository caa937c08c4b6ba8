"""`dvc repro` for real, in a temp copy of the project, on a tiny synthetic set."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from dvc_project import TINY, make_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git+DVC project holding our dvc.yaml, tiny params, and the sources the stages hash."""
    root = make_project(tmp_path_factory.mktemp("project"), TINY)
    run(["dvc", "repro"], root)
    return root


def test_repro_runs_every_stage_and_writes_the_contract_outputs(project: Path) -> None:
    for output in (
        "data/prepared/train.json",
        "data/prepared/labels.json",
        "metrics/data.json",
        "artifacts/graph/graph.npz",
        "artifacts/models/baseline/weights.pt",
        "artifacts/models/mlgcn/config.json",
        "metrics/evaluation.json",
        "metrics/per_class.csv",
        "artifacts/best.json",
        "artifacts/serving/model-store/mlic.mar",
        "artifacts/serving/config.properties",
    ):
        assert (project / output).is_file(), output
    evaluation = json.loads((project / "metrics/evaluation.json").read_text())
    assert set(evaluation) == {"baseline", "mlgcn"}
    assert 0 <= evaluation["mlgcn"]["mAP"] <= 100


def test_second_repro_is_a_no_op(project: Path) -> None:
    result = run(["dvc", "repro"], project)
    assert "Running stage" not in result.stdout + result.stderr
    assert run(["dvc", "status"], project).stdout.strip().startswith("Data and pipelines are up to date")


def test_metrics_are_declared_for_dvc_metrics_show(project: Path) -> None:
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    files = next(iter(shown.values()))["data"]
    assert "mAP" in files["metrics/evaluation.json"]["data"]["mlgcn"]
    assert "metrics/data.json" in files


def test_demo_serves_the_packaged_model_and_says_where_the_time_went(project: Path) -> None:
    """`mlic demo` on a project that is up to date: every stage is skipped, the real TorchServe
    answers for test images, the metrics and the timing summary are printed, the server is stopped."""
    result = run([sys.executable, "-m", "mlic", "demo", "--images", "2"], project)
    assert "The endpoint's answers for 2 test images" in result.stdout
    assert "truth:" in result.stdout and "TorchServe stopped" in result.stdout
    summary = result.stdout.split("Where the time went:")[1].splitlines()
    assert any(line.split()[:2] == ["train@mlgcn", "up"] for line in summary)
    assert summary[-1].split()[0] == "total"
    stopped = run([sys.executable, "-m", "mlic", "serve", "--stop"], project)
    assert "no TorchServe started by `mlic serve` was running" in stopped.stdout


def test_changing_one_models_knob_retrains_only_that_model(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"]["mlgcn"]["hidden_dim"] = 48
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = run(["dvc", "status", "--json"], project).stdout
    changed = set(json.loads(stale))
    assert "train@mlgcn" in changed
    assert "train@baseline" not in changed and "prepare" not in changed and "graph" not in changed


def test_failing_validation_stops_the_pipeline(tmp_path: Path, project: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(project, broken, ignore=shutil.ignore_patterns("artifacts", "metrics", "reports"))
    params = yaml.safe_load((broken / "params.yaml").read_text())
    params["validate"]["min_positives"] = 10_000  # no label can have that many training images
    (broken / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], broken, check=False)
    assert result.returncode != 0
    assert "min_positives" in result.stdout + result.stderr
    assert not (broken / "artifacts" / "graph" / "graph.npz").exists()
    assert not (broken / "metrics" / "data.json").exists()
