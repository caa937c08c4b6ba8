"""deploy/trainjob.yaml against Kubeflow Trainer v2.3.0's TrainJob CRD schema (strict, like
`kubectl apply --validate=strict`), and what its comments promise: the patch reaches the
runtime's training node, the claim is writable by the image's user, /dev/shm is in memory."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from crd_schema import CRDS, errors

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
