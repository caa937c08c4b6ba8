"""`mlic pipeline compile` for real: what the compiled KFP IR says, and what each task receives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pinned_image import PINNED_IMAGE
from typer.testing import CliRunner

from mlic.cli import app
from mlic.config import load_config
from mlic.errors import ConfigError, PipelineError
from mlic.kubeflow.params import parse_params, plan
from mlic.kubeflow.tasks import storage_uri

PROJECT = Path(__file__).resolve().parents[2]
PARAMS = PROJECT / "params.yaml"
STEP_TASKS = {"fetch-data", "prepare", "validate", "graph", "train", "evaluate", "package"}


def compile_ir(tmp_path: Path, *options: str) -> dict[str, Any]:
    output = tmp_path / "mlic.yaml"
    result = CliRunner().invoke(
        app,
        ["pipeline", "compile", "--output", str(output), "--params", str(PARAMS), "--image", PINNED_IMAGE, *options],
    )
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # the image is pinned by digest
    ir, *platform = yaml.safe_load_all(output.read_text())
    ir["platform"] = platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}
    return ir


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compile_ir(
        tmp_path_factory.mktemp("compiled"),
        *("--train-cpu", "6", "--train-memory", "24Gi", "--gpus", "2", "--train-parallelism", "3"),
        *("--data-secret", "mlic-data", "--data-secret-key", "AZURE_STORAGE_CONNECTION_STRING"),
    )


def all_tasks(ir: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of every DAG (root and nested), by task name."""
    dags = [ir["root"]["dag"]] + [spec["dag"] for spec in ir["components"].values() if "dag" in spec]
    return {name: task for dag in dags for name, task in dag["tasks"].items()}


def dag_holding(ir: dict[str, Any], task: str) -> str:
    """The component name of the sub-DAG that holds `task` ('root' for the top level)."""
    if task in ir["root"]["dag"]["tasks"]:
        return "root"
    (name,) = [name for name, spec in ir["components"].items() if task in spec.get("dag", {}).get("tasks", {})]
    return name


def root_task_calling(ir: dict[str, Any], component: str) -> dict[str, Any]:
    (task,) = [t for t in ir["root"]["dag"]["tasks"].values() if t["componentRef"]["name"] == component]
    return task


def test_every_step_is_a_python_component_in_the_runtime_image(ir: dict[str, Any]) -> None:
    executors = ir["deploymentSpec"]["executors"]
    assert {f"exec-{step}" for step in STEP_TASKS} <= set(executors)
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == PINNED_IMAGE, name
        command = " ".join(container["command"])
        assert "kfp.dsl.executor_main" in command, name  # a Python component (kfp.local can run it)
        assert "pip install" not in command, name  # install_kfp_package=False: the image has kfp
        assert "from mlic.kubeflow import tasks" in command, name  # the body only calls into mlic
    assert STEP_TASKS | {"check-params", "plan-training", "resolve-data-revision"} <= set(all_tasks(ir))


def test_training_loops_over_the_architectures_and_requests_gpus(ir: dict[str, Any]) -> None:
    loop_component = dag_holding(ir, "train")
    loop_task = root_task_calling(ir, loop_component)
    items = loop_task["parameterIterator"]["items"]["inputParameter"]
    source = loop_task["inputs"]["parameters"][items]["taskOutputParameter"]
    assert source == {"outputParameterKey": "Output", "producerTask": "plan-training"}

    train_inputs = all_tasks(ir)["train"]["inputs"]["parameters"]
    assert train_inputs["arch"]["parameterExpressionSelector"] == 'parseJson(string_value)["arch"]'
    assert train_inputs["params"]["parameterExpressionSelector"] == 'parseJson(string_value)["params"]'

    assert loop_task["iteratorPolicy"] == {"parallelismLimit": 3}  # not every architecture's GPUs at once

    resources = ir["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    assert resources["resourceCpuRequest"] == "6"
    assert resources["resourceMemoryRequest"] == "24Gi"
    evaluate = ir["deploymentSpec"]["executors"]["exec-evaluate"]["container"]["resources"]
    assert evaluate["accelerator"]["resourceCount"] == "1"  # scoring on a GPU when training has them
    other = {n: e for n, e in ir["deploymentSpec"]["executors"].items() if n not in ("exec-train", "exec-evaluate")}
    assert not any("accelerator" in e["container"].get("resources", {}) for e in other.values())


def test_gpu_tasks_land_on_gpu_nodes_with_a_big_shared_memory(ir: dict[str, Any]) -> None:
    for executor in ("exec-train", "exec-evaluate"):
        platform = ir["platform"][executor]
        assert platform["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert platform["nodeSelector"] == {"labels": {"nvidia.com/gpu.present": "true"}}
        assert platform["emptyDirMounts"] == [
            {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "8Gi"}
        ]


def test_every_task_requests_cpu_and_memory_with_equal_limits(ir: dict[str, Any]) -> None:
    """Limits equal to requests: Guaranteed QoS, so the kubelet evicts a training last."""
    for name, executor in ir["deploymentSpec"]["executors"].items():
        resources = executor["container"].get("resources", {})
        assert resources.get("resourceCpuRequest") and resources.get("resourceMemoryRequest"), name
        assert resources["resourceCpuLimit"] == resources["resourceCpuRequest"], name
        assert resources["resourceMemoryLimit"] == resources["resourceMemoryRequest"], name


def test_transient_failures_are_retried_with_backoff(ir: dict[str, Any]) -> None:
    tasks = all_tasks(ir)
    for name in ("fetch-data", "train"):
        policy = tasks[name]["retryPolicy"]
        assert policy["maxRetryCount"] == 2 and policy["backoffDuration"] == "60s", name
    assert "retryPolicy" not in tasks["validate"]  # a failed expectation fails the same way again


def test_the_data_credentials_come_from_a_secret(ir: dict[str, Any]) -> None:
    for executor in ("exec-fetch-data", "exec-resolve-data-revision"):
        (secret,) = ir["platform"][executor]["secretAsEnv"]
        assert secret["secretName"] == "mlic-data"
        assert secret["keyToEnv"] == [
            {"secretKey": "AZURE_STORAGE_CONNECTION_STRING", "envVar": "AZURE_STORAGE_CONNECTION_STRING"}
        ]
    assert "secretAsEnv" not in ir["platform"]["exec-train"]


def test_the_description_names_the_oldest_backend(ir: dict[str, Any]) -> None:
    assert "KFP backend >= 2.14.0" in ir["pipelineInfo"]["description"]


def test_an_image_without_a_digest_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "mlic.yaml"
    options = ["pipeline", "compile", "--output", str(output), "--params", str(PARAMS), "--image", "mlic:latest"]
    result = CliRunner().invoke(app, options)
    assert result.exit_code == PipelineError.exit_code, result.output
    assert "mlic:latest is not pinned by digest" in result.output and "cached with the old image" in result.output
    assert "[--image]" in result.output and "@sha256:<digest>" in result.output
    assert "--allow-mutable-tag" in result.output
    assert not output.exists()


def test_allow_mutable_tag_compiles_with_a_warning(tmp_path: Path) -> None:
    output = tmp_path / "mlic.yaml"
    options = ["pipeline", "compile", "--output", str(output), "--params", str(PARAMS), "--image", "mlic:latest"]
    result = CliRunner().invoke(app, [*options, "--allow-mutable-tag"])
    assert result.exit_code == 0, result.output
    assert "warning: image mlic:latest is not pinned by digest" in result.output
    ir, _platform = yaml.safe_load_all(output.read_text())
    executors = ir["deploymentSpec"]["executors"]
    assert {executor["container"]["image"] for executor in executors.values()} == {"mlic:latest"}


def test_cpu_only_build_requests_no_accelerator(tmp_path: Path) -> None:
    ir = compile_ir(tmp_path, "--gpus", "0", "--shm-size", "2Gi")
    executors = ir["deploymentSpec"]["executors"]
    for executor in ("exec-train", "exec-evaluate"):
        assert "accelerator" not in executors[executor]["container"]["resources"]
        assert set(ir["platform"][executor]) == {"emptyDirMounts", "podMetadata"}  # no GPU toleration or node label
        assert ir["platform"][executor]["emptyDirMounts"][0]["sizeLimit"] == "2Gi"
    assert executors["exec-train"]["container"]["resources"]["resourceCpuRequest"] == "4"


@pytest.mark.parametrize(
    ("option", "value"),
    [("--gpu-toleration", "nvidia.com/gpu"), ("--gpu-node-selector", "gpu"), ("--train-memory", "lots")],
)
def test_bad_placement_is_a_clear_error(tmp_path: Path, option: str, value: str) -> None:
    output = tmp_path / "x.yaml"
    result = CliRunner().invoke(
        app,
        [
            "pipeline",
            "compile",
            "--output",
            str(output),
            "--params",
            str(PARAMS),
            "--image",
            PINNED_IMAGE,
            option,
            value,
        ],
    )
    assert result.exit_code == PipelineError.exit_code, result.output
    assert option in result.output and value in result.output


def test_evaluate_collects_every_trained_model(ir: dict[str, Any]) -> None:
    loop_component = dag_holding(ir, "train")
    collected = ir["components"][loop_component]["outputDefinitions"]["artifacts"]
    ((loop_output, definition),) = collected.items()
    assert definition["isArtifactList"] is True
    evaluate_models = ir["root"]["dag"]["tasks"]["evaluate"]["inputs"]["artifacts"]["models"]["taskOutputArtifact"]
    loop_name = root_task_calling(ir, loop_component)["taskInfo"]["name"]
    assert evaluate_models == {"outputArtifactKey": loop_output, "producerTask": loop_name}


def test_package_runs_only_inside_the_gate_condition(ir: dict[str, Any]) -> None:
    gate_component = dag_holding(ir, "package")
    assert gate_component != "root"
    gate_task = root_task_calling(ir, gate_component)
    condition = " ".join(gate_task["triggerPolicy"]["condition"].split())
    assert condition == "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"
    gate_input = gate_task["inputs"]["parameters"]["pipelinechannel--evaluate-Output"]["taskOutputParameter"]
    assert gate_input["producerTask"] == "evaluate"
    assert ir["components"]["comp-evaluate"]["outputDefinitions"]["parameters"]["Output"]["parameterType"] == "BOOLEAN"


def test_caching_is_decided_per_task(ir: dict[str, Any]) -> None:
    leaves = {
        name: task
        for name, task in all_tasks(ir).items()
        if "executorLabel" in ir["components"][task["componentRef"]["name"]]
    }
    caching = {name: task["cachingOptions"].get("enableCache", False) for name, task in leaves.items()}
    assert caching.pop("resolve-data-revision") is False  # a branch moves: look it up every run
    assert all(caching.values()), caching  # keyed on the commit, the params subset, upstream artifacts
    assert set(caching) >= STEP_TASKS


def test_pipeline_parameters_and_their_defaults(ir: dict[str, Any]) -> None:
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"params", "data_repo_url", "data_rev", "data_path"}
    assert json.loads(parameters["params"]["defaultValue"]) == load_config(PARAMS).to_dict()
    assert parameters["data_repo_url"]["defaultValue"] == ""  # the built-in synthetic data
    assert parameters["data_path"]["defaultValue"] == "data/raw"


def test_mlic_help_does_not_import_kfp() -> None:
    code = "import sys, mlic.cli; assert 'kfp' not in sys.modules, 'kfp imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# What each task receives: the cache keys of the compiled pipeline.


def params_json(**overrides: Any) -> str:
    raw = load_config(PARAMS).to_dict()
    raw["architectures"] = ["baseline", "mlgcn"]
    raw["models"] = {"baseline": {"dropout": 0.1}, "mlgcn": {"hidden_dim": 1024, "pool": "max"}}
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    return json.dumps(raw)


def test_a_change_reaches_only_the_tasks_that_read_it() -> None:
    base, later = plan(params_json()), plan(params_json(evaluate__min_map=55.0))
    unchanged = ("prepare", "validate", "graph", "train", "package")  # package sees the gate through evaluate
    assert [getattr(base, task) for task in unchanged] == [getattr(later, task) for task in unchanged]
    assert base.evaluate != later.evaluate

    retuned = plan(params_json(graph__threshold=0.3))
    assert retuned.graph != base.graph and retuned.prepare == base.prepare and retuned.train == base.train


def test_each_training_gets_only_its_own_model_knobs() -> None:
    runs = {run["arch"]: json.loads(run["params"]) for run in plan(params_json()).train}
    assert list(runs) == ["baseline", "mlgcn"]
    assert list(runs["mlgcn"]["models"]) == ["mlgcn"]
    assert runs["mlgcn"]["models"]["mlgcn"] | {"hidden_dim": 1024, "pool": "max"} == runs["mlgcn"]["models"]["mlgcn"]
    assert "architectures" not in runs["mlgcn"]
    assert parse_params(json.dumps(runs["mlgcn"])).model_knobs("mlgcn") == parse_params(params_json()).model_knobs(
        "mlgcn"
    )


def test_broken_params_name_the_parameter() -> None:
    with pytest.raises(PipelineError, match="not valid JSON"):
        plan("{not json")
    with pytest.raises(ConfigError, match="train.epochs"):
        plan(json.dumps({"train": {"epochs": 0}}))


def test_the_package_artifact_reads_as_a_kserve_storage_uri() -> None:
    assert storage_uri("minio://mlpipeline/v2/artifacts/mlic/run/package/7/model_archive") == (
        "s3://mlpipeline/v2/artifacts/mlic/run/package/7/model_archive"
    )
    assert storage_uri("gs://bucket/v2/artifacts/model_archive") == "gs://bucket/v2/artifacts/model_archive"


def test_every_task_pulls_with_the_given_registry_secrets(tmp_path: Path) -> None:
    ir = compile_ir(tmp_path, "--image-pull-secret", "regcred", "--image-pull-secret", "mirror")
    for executor in ir["deploymentSpec"]["executors"]:
        secrets = ir["platform"][executor]["imagePullSecret"]
        assert [secret["secretName"] for secret in secrets] == ["regcred", "mirror"], executor


def test_no_pull_secret_unless_asked(ir: dict[str, Any]) -> None:
    assert not any("imagePullSecret" in executor for executor in ir["platform"].values())


@pytest.mark.parametrize(("options", "train_gpus", "evaluate_gpus"), [
    (["--gpus", "0", "--evaluate-gpus", "1"], 0, 1),  # CPU training, scoring on a GPU
    (["--gpus", "2", "--evaluate-gpus", "0"], 2, 0),  # GPU training, scoring on the CPUs
    (["--gpus", "2"], 2, 1),  # the default: one GPU when training has them
])  # fmt: skip
def test_evaluate_runs_on_a_gpu_when_asked(
    tmp_path: Path, options: list[str], train_gpus: int, evaluate_gpus: int
) -> None:
    ir = compile_ir(tmp_path, *options)
    executors = ir["deploymentSpec"]["executors"]
    for executor, count in (("exec-train", train_gpus), ("exec-evaluate", evaluate_gpus)):
        resources = executors[executor]["container"]["resources"]
        assert int(resources.get("accelerator", {}).get("resourceCount", 0)) == count, executor
        assert ("tolerations" in ir["platform"][executor]) == (count > 0), executor


def test_every_task_pod_is_labelled_with_its_task(ir: dict[str, Any]) -> None:
    """Every executor carries a platform spec: network policies and quotas can select its pods."""
    for executor in ir["deploymentSpec"]["executors"]:
        labels = ir["platform"][executor]["podMetadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "mlic", executor
        assert labels["app.kubernetes.io/component"] == executor.removeprefix("exec-"), executor
