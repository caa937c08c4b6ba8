"""What is fixed when the pipeline is compiled (kfp-free, so the CLI can show the defaults fast)."""

from dataclasses import dataclass, field

from mlic import __version__

PIPELINE_NAME = "mlic"
#: The runtime image built by the Dockerfile's `runtime` target (docs/operations.md).
DEFAULT_IMAGE = f"ghcr.io/mlic/mlic-runtime:{__version__}"
#: Pipeline parameters besides `params` (params.yaml as JSON), with their defaults: the data
#: repository (empty: the built-in synthetic source), its branch/tag/commit ("" = default
#: branch), and the DVC-tracked path in it.
DATA_PARAMETERS = {"data_repo_url": "", "data_rev": "", "data_path": "data/raw"}


@dataclass(frozen=True)
class TrainResources:
    """What each train task requests; `accelerator_count=0` trains on CPU nodes."""

    cpu: str = "4"
    memory: str = "16Gi"
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1


@dataclass(frozen=True)
class BuildSettings:
    image: str = DEFAULT_IMAGE
    train: TrainResources = field(default_factory=TrainResources)
    #: False: every task re-runs (a run to reproduce from scratch); True: each task caches on its inputs.
    cache: bool = True
