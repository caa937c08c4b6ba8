"""What is fixed when the pipeline is compiled (kfp-free, so the CLI can show the defaults fast)."""

from dataclasses import dataclass, field

from mlic import __version__
from mlic.errors import PipelineError

PIPELINE_NAME = "mlic"
#: The runtime image built by the Dockerfile's `runtime` target (docs/operations.md). A tag is
#: mutable and KFP's cache key holds the image string: compile refuses it without
#: --allow-mutable-tag, so a cluster gets the image by digest.
DEFAULT_IMAGE = f"ghcr.io/mlic/mlic-runtime:{__version__}"
#: Oldest KFP backend that runs the pipeline: it accepts `dsl.Collected` of artifacts (the
#: trained models handed to evaluate) only from 2.14.0.
MIN_BACKEND_VERSION = (2, 14, 0)
#: Pipeline parameters besides `params` (params.yaml as JSON), with their defaults: the data
#: repository (empty: the built-in synthetic source), its branch/tag/commit ("" = default
#: branch), and the DVC-tracked path in it.
DATA_PARAMETERS = {"data_repo_url": "", "data_rev": "", "data_path": "data/raw"}
#: Where the shared-memory volume goes: DataLoader workers pass batches through /dev/shm, whose
#: container default (64 MB) kills them.
SHM_PATH = "/dev/shm"


@dataclass(frozen=True)
class Requests:
    """CPU and memory one task requests (Kubernetes quantities)."""

    cpu: str
    memory: str


#: Requests of the tasks other than train (train's come from `TrainResources`), sized for COCO.
DEFAULT_REQUESTS = {
    "check-params": Requests("100m", "256Mi"),
    "plan-training": Requests("100m", "256Mi"),
    "resolve-data-revision": Requests("100m", "256Mi"),
    "fetch-data": Requests("1", "2Gi"),
    "prepare": Requests("2", "8Gi"),
    "validate": Requests("1", "8Gi"),
    "graph": Requests("2", "8Gi"),
    "evaluate": Requests("4", "16Gi"),
    "package": Requests("2", "8Gi"),
}


@dataclass(frozen=True)
class TrainResources:
    """What each train task requests, and where it may run; `accelerator_count=0` trains on CPU nodes.

    With accelerators, train and evaluate get `gpu_toleration` ("key[=value]:Effect", "" for none)
    and `gpu_node_selector` ("key=value", "" for none), so they land on (tainted) GPU nodes.
    """

    cpu: str = "4"
    memory: str = "16Gi"
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    gpu_toleration: str = "nvidia.com/gpu:NoSchedule"
    gpu_node_selector: str = "nvidia.com/gpu.present=true"
    #: Size of the in-memory /dev/shm of train and evaluate (counts against the pod's memory).
    shm_size: str = "8Gi"


#: What each node of a multi-node TrainJob (`mlic pipeline trainjob`) gets unless told otherwise.
TRAINJOB_RESOURCES = TrainResources(cpu="8", memory="32Gi")
TRAINJOB_CLAIM = "mlic-workspace"
TRAINJOB_EPHEMERAL_STORAGE = "20Gi"


@dataclass(frozen=True)
class DataSecret:
    """A Kubernetes Secret whose keys become the fetch tasks' environment (key name = variable name),
    e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for an S3 DVC remote; `name=""`: none."""

    name: str = ""
    keys: tuple[str, ...] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class BuildSettings:
    image: str = DEFAULT_IMAGE
    train: TrainResources = field(default_factory=TrainResources)
    #: False: every task re-runs (a run to reproduce from scratch); True: each task caches on its inputs.
    cache: bool = True
    #: Trainings that may run at once (each holds `train.accelerator_count` accelerators).
    train_parallelism: int = 1
    #: Accelerators of the evaluate task (same type, toleration and node label as train's); None:
    #: one when training has them, else none.
    evaluate_accelerators: int | None = None
    #: Retries of the tasks that can fail transiently (fetch: network; train: node loss, preemption).
    retries: int = 2
    data_secret: DataSecret = field(default_factory=DataSecret)
    #: Secrets of type kubernetes.io/dockerconfigjson every task's pod pulls the image with (a
    #: private registry); empty: the namespace's default service account's.
    image_pull_secrets: tuple[str, ...] = ()
    requests: dict[str, Requests] = field(default_factory=lambda: dict(DEFAULT_REQUESTS))


def mutable_image_problem(image: str) -> str | None:
    """Why `image` is unsafe for KFP's cache (its key holds the image string), or None when it is pinned."""
    if "@sha256:" in image:
        return None
    return (
        f"image {image} is not pinned by digest: KFP's cache key holds the image string, so after a "
        "rebuild under the same tag the cluster reuses results cached with the old image"
    )


def toleration(spec: str) -> dict[str, str]:
    """`key[=value]:Effect` → add_toleration's arguments (no value: operator Exists)."""
    taint, separator, effect = spec.rpartition(":")
    key, equals, value = taint.partition("=")
    if not separator or not key or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise PipelineError(
            f"'{spec}' is not a toleration",
            field="--gpu-toleration",
            fix="give key[=value]:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute, "
            "e.g. nvidia.com/gpu:NoSchedule ('' for none)",
        )
    if equals:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def node_selector(spec: str) -> tuple[str, str]:
    """`key=value` → (key, value) of a node label."""
    key, equals, value = spec.partition("=")
    if not equals or not key:
        raise PipelineError(
            f"'{spec}' is not a node label",
            field="--gpu-node-selector",
            fix="give key=value, e.g. nvidia.com/gpu.present=true ('' for none)",
        )
    return key, value
