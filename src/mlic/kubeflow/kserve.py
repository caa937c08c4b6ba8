"""The packaged model in the layout KServe's TorchServe runtimes read from a storageUri.

KServe copies `storageUri` to /mnt/models and TorchServe runs with
`--ts-config /mnt/models/config/config.properties`, loading archives from
/mnt/models/model-store. The settings are those of `mlic package` (batching, workers, request
size, model API off, Prometheus metrics, every API on 127.0.0.1) with two pod-specific changes:
read the archive from /mnt/models, and TorchServe's token off.

Who may call is decided in front of TorchServe, not by it: its token would be generated inside
the pod, where no client could read it. TorchServe listens on the pod's loopback only, so the one
way in is Knative's queue-proxy in the same pod, behind the Istio sidecar that enforces the
`AuthorizationPolicy` of deploy/kserve/ (callers: the authenticated ingress gateway and named
service accounts). The readiness probe asks the model itself (`mlic.serving.probe`) on loopback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlic.config import PackageConfig
from mlic.paths import Paths
from mlic.serving.archive import archive_path, serving_properties, write_properties

#: Where KServe's storage initializer places the storageUri contents.
MODEL_MOUNT = "/mnt/models"
STORE_DIR = "model-store"
CONFIG_FILE = Path("config") / "config.properties"


def kserve_properties(package: PackageConfig) -> dict[str, str]:
    """`mlic package`'s TorchServe settings, adapted to a KServe predictor pod (addresses kept on
    127.0.0.1:8080 / 8081 / 8082, the ports deploy/kserve/servingruntime.yaml names)."""
    properties = serving_properties(package)
    properties.update(
        {
            "model_store": f"{MODEL_MOUNT}/{STORE_DIR}",
            "load_models": f"{package.model_name}={archive_path(Path(), package.model_name).name}",
            "disable_token_authorization": "true",
        }
    )
    return properties


def write_kserve_layout(paths: Paths, package: PackageConfig, target: Path) -> Path:
    """Copy the archive `mlic package` built into `target/model-store/`, config beside it."""
    archive = archive_path(paths.model_store, package.model_name)
    store = target / STORE_DIR
    store.mkdir(parents=True, exist_ok=True)
    shutil.copy2(archive, store / archive.name)
    write_properties(
        target / CONFIG_FILE,
        kserve_properties(package),
        "TorchServe settings for a KServe predictor (written by the mlic Kubeflow package component).\n"
        "Loopback only; who may call is the Istio AuthorizationPolicy's job (deploy/kserve/): token auth is off.",
    )
    return target
