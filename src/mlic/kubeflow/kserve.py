"""The packaged model in the layout KServe's TorchServe runtimes read from a storageUri.

KServe copies `storageUri` to /mnt/models and TorchServe runs with
`--ts-config /mnt/models/config/config.properties`, loading archives from
/mnt/models/model-store. The settings are those of `mlic package` (batching, workers, request
size, model API off, Prometheus metrics) with three pod-specific changes: listen on all
interfaces, read the archive from /mnt/models, and leave authentication to the KServe ingress —
TorchServe's own token is generated inside the pod, where no client could read it.
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
#: Ports the ServingRuntime in deploy/kserve/ exposes (inference; Prometheus scrapes metrics).
INFERENCE_PORT = 8080
METRICS_PORT = 8082


def kserve_properties(package: PackageConfig) -> dict[str, str]:
    """`mlic package`'s TorchServe settings, adapted to a KServe predictor pod."""
    properties = serving_properties(package)
    properties.update(
        {
            "inference_address": f"http://0.0.0.0:{INFERENCE_PORT}",
            "metrics_address": f"http://0.0.0.0:{METRICS_PORT}",
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
        "Authentication is the ingress's job: TorchServe's token auth is off here.",
    )
    return target
