"""A Kubeflow Trainer v2.3 TrainJob that trains one architecture with DDP across nodes.

Rendered from options (`mlic pipeline trainjob`) rather than edited by hand, so the node count,
the GPUs per node and the resources cannot disagree with one another, and the patch keeps the
shape Trainer v2.3's schema accepts (`runtimePatches`; `podTemplateOverrides` before v2.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from mlic.errors import PipelineError
from mlic.knobs import architecture_names
from mlic.kubeflow.settings import (
    DEFAULT_IMAGE,
    SHM_PATH,
    TRAINJOB_CLAIM,
    TRAINJOB_EPHEMERAL_STORAGE,
    TRAINJOB_RESOURCES,
    TrainResources,
    mutable_image_problem,
    node_selector,
    toleration,
)

#: The ClusterTrainingRuntime that sets torchrun's PET_* variables, and its training node's names.
RUNTIME = "torch-distributed"
NODE = "node"
#: The image's unprivileged user and group (Dockerfile): fsGroup makes the claim writable for it.
IMAGE_USER = 10001
WORKSPACE = "/workspace"
#: A TrainJob name is a DNS label (RFC 1123), and the Trainer appends suffixes to it.
NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
#: A Kubernetes resource quantity ("8", "500m", "32Gi", "1e3").
QUANTITY = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+|[numkMGTPE]|[KMGTPE]i)?")

HEADER = """\
# Multi-node DDP training of one architecture with Kubeflow Trainer v2.3 (TrainJob v1alpha1 with
# runtimePatches), same image and entry point as every other way of running mlic:
# `torchrun -m mlic train --arch A`. Rendered by
#   {command}
# Render yours the same way (`mlic pipeline trainjob --help`) rather than editing this file.
# The torch-distributed runtime sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK and
# PET_MASTER_ADDR/PORT, which torchrun reads; mlic's training loop picks NCCL on GPUs and shards
# the data with a DistributedSampler; rank 0 writes artifacts/models/<arch>/.
# /workspace is a ReadWriteMany claim holding the project root: params.yaml, data/prepared/ and
# artifacts/graph/ (docs/operations.md, section 9). fsGroup makes the claim writable by the
# image's non-root user (10001). /dev/shm is memory-backed: DataLoader workers pass batches
# through it. Checked against Trainer v2.3.0's TrainJob schema by tests/unit/test_trainjob_manifest.py.
"""


@dataclass(frozen=True)
class TrainJobSpec:
    """What one TrainJob runs and on what: `resources` per node, GPUs included (0: CPU nodes, gloo)."""

    arch: str
    nodes: int = 2
    image: str = DEFAULT_IMAGE
    claim: str = TRAINJOB_CLAIM
    resources: TrainResources = TRAINJOB_RESOURCES
    ephemeral_storage: str = TRAINJOB_EPHEMERAL_STORAGE

    @property
    def name(self) -> str:
        return f"mlic-train-{self.arch}"

    @property
    def gpus(self) -> int:
        """GPUs per node, one training process each."""
        return self.resources.accelerator_count


def _pod_spec(spec: TrainJobSpec) -> dict[str, Any]:
    """The patch to the runtime's node pods: user, placement, the claim and /dev/shm."""
    volumes: list[dict[str, Any]] = [{"name": "workspace", "persistentVolumeClaim": {"claimName": spec.claim}}]
    mounts = [{"name": "workspace", "mountPath": WORKSPACE}]
    if spec.resources.shm_size:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}})
        mounts.append({"name": "dshm", "mountPath": SHM_PATH})
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": IMAGE_USER,
            "runAsGroup": IMAGE_USER,
            "fsGroup": IMAGE_USER,
        }
    }
    if spec.gpus and spec.resources.gpu_toleration:
        pod["tolerations"] = [toleration(spec.resources.gpu_toleration)]
    if spec.gpus and spec.resources.gpu_node_selector:
        key, value = node_selector(spec.resources.gpu_node_selector)
        pod["nodeSelector"] = {key: value}
    return {**pod, "volumes": volumes, "containers": [{"name": NODE, "volumeMounts": mounts}]}


def _check(spec: TrainJobSpec) -> None:
    if spec.arch not in architecture_names():
        raise PipelineError(
            f"unknown architecture '{spec.arch}'", field="--arch", fix=f"use one of {', '.join(architecture_names())}"
        )
    if not NAME.fullmatch(spec.name):
        raise PipelineError(f"'{spec.name}' is not a valid TrainJob name", field="--arch")
    quantities = {
        "--cpu": spec.resources.cpu,
        "--memory": spec.resources.memory,
        "--shm-size": spec.resources.shm_size,
        "--ephemeral-storage": spec.ephemeral_storage,
    }
    for option, value in quantities.items():
        if value and not QUANTITY.fullmatch(value):
            raise PipelineError(
                f"'{value}' is not a Kubernetes quantity", field=option, fix="e.g. 8, 500m, 32Gi ('' for none)"
            )
    if spec.nodes < 1 or spec.gpus < 0:
        raise PipelineError(
            f"{spec.nodes} nodes with {spec.gpus} GPUs each", field="--nodes/--gpus", fix="nodes >= 1, gpus >= 0"
        )


def render(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob manifest of `spec` (valid against Trainer v2.3.0's CRD)."""
    _check(spec)
    # CPU and memory limits equal to the requests: Guaranteed QoS, as the pipeline's tasks (evicted last).
    requests = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    limits = dict(requests)
    if spec.gpus:
        limits[spec.resources.accelerator_type] = str(spec.gpus)
    if spec.ephemeral_storage:
        requests["ephemeral-storage"] = spec.ephemeral_storage
    command = ["torchrun", "-m", "mlic", "train", "--arch", spec.arch]
    command += ["--params", f"{WORKSPACE}/params.yaml", "--root", WORKSPACE]
    resources = {"requests": requests, "limits": limits}
    trainer: dict[str, Any] = {
        "image": spec.image,
        "command": command,
        "numNodes": spec.nodes,
        "resourcesPerNode": resources,
    }
    if spec.gpus:
        trainer["env"] = [{"name": "NCCL_DEBUG", "value": "WARN"}]
    replicated_job = {"name": NODE, "template": {"spec": {"template": {"spec": _pod_spec(spec)}}}}
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": spec.name},
        "spec": {
            "runtimeRef": {"name": RUNTIME},
            "trainer": trainer,
            "runtimePatches": [
                {"manager": "mlic", "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated_job]}}}}
            ],
        },
    }


EMPTY = "''"


def command_line(spec: TrainJobSpec) -> str:
    """The `mlic pipeline trainjob` call that renders `spec` (options at their defaults left out)."""
    defaults = TrainJobSpec(spec.arch)
    words = ["mlic pipeline trainjob", f"--arch {spec.arch}", f"--nodes {spec.nodes}", f"--gpus {spec.gpus}"]
    options = {
        "--image": (spec.image, defaults.image),
        "--claim": (spec.claim, defaults.claim),
        "--cpu": (spec.resources.cpu, defaults.resources.cpu),
        "--memory": (spec.resources.memory, defaults.resources.memory),
        "--shm-size": (spec.resources.shm_size, defaults.resources.shm_size),
        "--ephemeral-storage": (spec.ephemeral_storage, defaults.ephemeral_storage),
        "--gpu-type": (spec.resources.accelerator_type, defaults.resources.accelerator_type),
        "--gpu-toleration": (spec.resources.gpu_toleration, defaults.resources.gpu_toleration),
        "--gpu-node-selector": (spec.resources.gpu_node_selector, defaults.resources.gpu_node_selector),
    }
    words += [f"{option} {value or EMPTY}" for option, (value, default) in options.items() if value != default]
    if mutable_image_problem(spec.image):
        words.append("--allow-mutable-tag")
    return " ".join(words)


def to_yaml(spec: TrainJobSpec) -> str:
    """The manifest as YAML under a header that says what it is and which command wrote it."""
    body = yaml.safe_dump(render(spec), sort_keys=False, default_flow_style=False, width=120)
    return HEADER.format(command=command_line(spec)) + body
