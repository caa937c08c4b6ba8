"""`mlic pipeline trainjob` and deploy/trainjob.yaml (its rendering) against Kubeflow Trainer
v2.3.0's TrainJob CRD schema (strict, like `kubectl apply --validate=strict`), and what the
manifest promises: the patch reaches the runtime's training node, the claim is writable by the
image's user, /dev/shm is in memory, GPU placement only with GPUs."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import CRDS, errors
from pinned_image import PINNED_IMAGE
from typer.testing import CliRunner

from mlic.cli import app
from mlic.errors import PipelineError
from mlic.kubeflow.settings import TRAINJOB_RESOURCES
from mlic.kubeflow.trainjob import TrainJobSpec, command_line, to_yaml

ROOT = Path(__file__).resolve().parents[2]
TRAINJOB_CRD = "trainer-v2.3.0/trainer.kubeflow.org_trainjobs.yaml"
#: The patch under spec.runtimePatches[0] down to the node pods' spec.
POD_SPEC = ("trainingRuntimeSpec", "template", "spec", "replicatedJobs", 0, "template", "spec", "template", "spec")


def trainjob() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "trainjob.yaml").read_text(encoding="utf-8"))


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    node: Any = manifest["spec"]["runtimePatches"][0]
    for key in POD_SPEC:
        node = node[key]
    return node


def test_the_trainjob_matches_the_trainer_v2_3_crd() -> None:
    manifest = trainjob()
    assert (manifest["apiVersion"], manifest["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert errors(TRAINJOB_CRD, manifest) == []


def test_validation_refuses_the_pre_v2_2_field() -> None:
    """The check has teeth: podTemplateOverrides (Trainer < v2.2) is what v2.3.0 rejects."""
    manifest = trainjob()
    old = copy.deepcopy(manifest)
    old["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}], "spec": pod_spec(manifest)}]
    assert any("podTemplateOverrides" in error for error in errors(TRAINJOB_CRD, old))
    misspelt = copy.deepcopy(manifest)
    pod_spec(misspelt)["securityContext"]["fsGroups"] = 10001
    assert any("fsGroups" in error for error in errors(TRAINJOB_CRD, misspelt))


def test_the_patch_targets_the_runtimes_training_node() -> None:
    runtime = yaml.safe_load((CRDS / "trainer-v2.3.0" / "runtime_torch_distributed.yaml").read_text(encoding="utf-8"))
    manifest = trainjob()
    assert manifest["spec"]["runtimeRef"]["name"] == runtime["metadata"]["name"]
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    (container,) = job["template"]["spec"]["template"]["spec"]["containers"]
    patch = manifest["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert patch["name"] == job["name"]
    assert [c["name"] for c in pod_spec(manifest)["containers"]] == [container["name"]]


def test_the_claim_is_writable_and_shm_is_in_memory() -> None:
    spec = pod_spec(trainjob())
    security = spec["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == security["fsGroup"] == 10001
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {mount["mountPath"]: mount["name"] for mount in spec["containers"][0]["volumeMounts"]}
    assert mounts == {"/workspace": "workspace", "/dev/shm": "dshm"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def render(*options: str) -> tuple[int, str]:
    """`mlic pipeline trainjob` to standard output: (exit code, output)."""
    result = CliRunner().invoke(app, ["pipeline", "trainjob", *options])
    return result.exit_code, result.output


def test_the_committed_manifest_is_the_rendered_one() -> None:
    committed = (ROOT / "deploy" / "trainjob.yaml").read_text(encoding="utf-8")
    command = next(line for line in committed.splitlines() if line.startswith("#   mlic pipeline trainjob"))
    spec = TrainJobSpec("mlgcn", nodes=2, resources=replace(TRAINJOB_RESOURCES, accelerator_count=4))
    assert command == f"#   {command_line(spec)}"
    assert committed == to_yaml(spec), "deploy/trainjob.yaml is stale: render it again with the command in its header"


@pytest.mark.parametrize(("arch", "nodes", "gpus"), [("msrn", 1, 1), ("sgfn", 4, 8), ("baseline", 3, 0)])
def test_rendered_trainjobs_match_the_crd_and_ask_what_was_given(arch: str, nodes: int, gpus: int) -> None:
    image = PINNED_IMAGE
    code, output = render("--arch", arch, "--nodes", str(nodes), "--gpus", str(gpus), "--image", image)
    assert code == 0, output
    manifest = yaml.safe_load(output)
    assert errors(TRAINJOB_CRD, manifest) == []
    trainer = manifest["spec"]["trainer"]
    assert trainer["numNodes"] == nodes and trainer["image"] == image
    assert trainer["command"][:6] == ["torchrun", "-m", "mlic", "train", "--arch", arch]
    resources = trainer["resourcesPerNode"]
    assert resources["limits"].get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    assert {key: resources["limits"][key] for key in ("cpu", "memory")} == {"cpu": "8", "memory": "32Gi"}
    assert resources["requests"]["ephemeral-storage"] == "20Gi"
    spec = pod_spec(manifest)
    assert spec["securityContext"]["fsGroup"] == 10001
    # CPU nodes need no GPU toleration or GPU node label.
    assert ("tolerations" in spec) == ("nodeSelector" in spec) == (gpus > 0)


def test_options_without_shm_and_with_a_tainted_pool() -> None:
    image = PINNED_IMAGE
    code, output = render(
        "--arch", "mgsgn", "--image", image, "--shm-size", "", "--claim", "coco-ws",
        "--gpu-toleration", "pool=gpu:NoExecute", "--gpu-node-selector", "pool=a100",
    )  # fmt: skip
    assert code == 0, output
    manifest = yaml.safe_load(output)
    assert errors(TRAINJOB_CRD, manifest) == []
    spec = pod_spec(manifest)
    assert [volume["name"] for volume in spec["volumes"]] == ["workspace"]
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "coco-ws"
    assert spec["tolerations"] == [{"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}]
    assert spec["nodeSelector"] == {"pool": "a100"}
    assert "--shm-size ''" in output and "--claim coco-ws" in output  # the header's command renders it again


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        (["--arch", "resnet"], "[--arch]", "unknown architecture 'resnet'"),
        (["--arch", "msrn", "--memory", "lots"], "[--memory]", "'lots' is not a Kubernetes quantity"),
        (["--arch", "msrn", "--gpu-toleration", "gpu"], "[--gpu-toleration]", "'gpu' is not a toleration"),
        (["--arch", "msrn"], "[--image]", "not pinned by digest"),
    ],
)
def test_bad_options_are_clear_errors(options: list[str], field: str, words: str) -> None:
    code, output = render(*options)
    assert code == PipelineError.exit_code, output
    assert field in output and words in output and "apiVersion" not in output
