"""components/<step>/component.yaml: what `mlic pipeline components` writes now, and loadable by kfp.

No `from __future__ import annotations` here: kfp reads the test pipeline's annotations as real types.
"""

from pathlib import Path

import pytest
import yaml
from kfp import compiler, components, dsl
from pinned_image import PINNED_IMAGE
from typer.testing import CliRunner

from mlic.cli import app
from mlic.kubeflow.components import FUNCTIONS, component_file_name
from mlic.kubeflow.settings import DEFAULT_IMAGE

COMMITTED = Path(__file__).resolve().parents[2] / "components"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("components")
    result = CliRunner().invoke(  # the placeholder image, whatever `make images` recorded here
        app, ["pipeline", "components", "--output-dir", str(folder), "--image", DEFAULT_IMAGE, "--allow-mutable-tag"]
    )
    assert result.exit_code == 0, result.output
    return folder


def test_the_committed_specs_are_the_compiled_ones(fresh: Path) -> None:
    names = sorted(str(path.relative_to(fresh)) for path in fresh.glob("*/component.yaml"))
    assert names == sorted(component_file_name(function.__name__) for function in FUNCTIONS)
    committed = sorted(str(path.relative_to(COMMITTED)) for path in COMMITTED.glob("**/*.yaml"))
    assert committed == names, "run `make components`"
    for name in names:
        assert (COMMITTED / name).read_text() == (fresh / name).read_text(), f"{name} is stale: run `make components`"


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda function: function.__name__)
def test_each_spec_loads_and_runs_in_the_runtime_image(function: object) -> None:
    component = components.load_component_from_file(str(COMMITTED / component_file_name(function.__name__)))
    spec = component.pipeline_spec
    (executor,) = spec.deployment_spec["executors"].values()
    assert executor["container"]["image"] == DEFAULT_IMAGE
    assert "from mlic.kubeflow import tasks" in " ".join(executor["container"]["command"])
    assert component.name == function.__name__.replace("_", "-")


def test_a_loaded_spec_wires_into_a_pipeline_of_ones_own_that_compiles(tmp_path: Path) -> None:
    train = components.load_component_from_file(str(COMMITTED / "train" / "component.yaml"))
    graph = components.load_component_from_file(str(COMMITTED / "graph" / "component.yaml"))
    prepare = components.load_component_from_file(str(COMMITTED / "prepare" / "component.yaml"))
    fetch = components.load_component_from_file(str(COMMITTED / "fetch-data" / "component.yaml"))

    @dsl.pipeline(name="mine")
    def mine(params: str) -> None:
        raw = fetch(repo_url="", commit="", path="data/raw")
        prepared = prepare(params=params, raw_data=raw.outputs["data"])
        label_graph = graph(params=params, prepared=prepared.outputs["prepared"])
        task = train(
            params=params, arch="mlgcn", prepared=prepared.outputs["prepared"], graph=label_graph.outputs["graph"]
        )
        task.set_container_image(PINNED_IMAGE)

    tasks = mine.pipeline_spec.root.dag.tasks
    assert set(tasks) == {"fetch-data", "prepare", "graph", "train"}
    output = tmp_path / "mine.yaml"
    compiler.Compiler().compile(mine, str(output))
    compiled = yaml.safe_load(output.read_text())
    train_image = compiled["deploymentSpec"]["executors"]["exec-train"]["container"]["image"]
    assert train_image == PINNED_IMAGE
    assert compiled["root"]["dag"]["tasks"]["train"]["dependentTasks"] == ["graph", "prepare"]
