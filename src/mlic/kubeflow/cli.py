"""`mlic pipeline compile | components | run-local | submit | trainjob | images`.

kfp is imported inside the commands (`mlic --help` stays fast).
"""

import inspect
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from mlic.cli_common import ParamsOption, SetOption, guarded
from mlic.errors import PipelineError
from mlic.kubeflow.images import DEFAULT_PYTHON_IMAGE, RECORD_FILE, recorded_runtime_image
from mlic.kubeflow.settings import (
    DATA_PARAMETERS,
    DEFAULT_IMAGE,
    TRAINJOB_CLAIM,
    TRAINJOB_EPHEMERAL_STORAGE,
    TRAINJOB_RESOURCES,
    BuildSettings,
    DataSecret,
    TrainResources,
    mutable_image_problem,
)
from mlic.urls import redact

pipeline_app = typer.Typer(no_args_is_help=True, add_completion=False)

DEFAULT_COMPILED = Path("pipelines") / "compiled" / "mlic.yaml"
DEFAULT_TRAIN = TrainResources()
DEFAULT_SETTINGS = BuildSettings()
#: Local runs' outputs (.mlic/ is git-ignored).
DEFAULT_OUTPUT_DIR = Path(".mlic") / "kfp-local"

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="Set a pipeline parameter: data_repo_url=URL, data_rev=BRANCH|TAG|SHA, data_path=PATH (repeatable).",
    ),
]
ImageOption = Annotated[
    str,
    typer.Option(
        help="Runtime image every task runs in, pinned by digest (…@sha256:…); default: the one `make images` "
        f"recorded in {RECORD_FILE}, else {DEFAULT_IMAGE}.",
        show_default=False,
    ),
]
MutableTagOption = Annotated[
    bool,
    typer.Option(
        "--allow-mutable-tag",
        help="Accept an --image without a digest (a local try; on a cluster KFP's cache then outlives rebuilds).",
    ),
]
CpuOption = Annotated[str, typer.Option("--train-cpu", help="CPU request of each train task.")]
MemoryOption = Annotated[str, typer.Option("--train-memory", help="Memory request of each train task.")]
GpuTypeOption = Annotated[str, typer.Option("--gpu-type", help="Accelerator resource each train task requests.")]
GpusOption = Annotated[int, typer.Option("--gpus", min=0, help="Accelerators per train task (0: train on CPU nodes).")]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Compile with caching off: every task re-runs (default: cache on inputs).")
]
TolerationOption = Annotated[
    str, typer.Option("--gpu-toleration", help="Toleration of GPU tasks, key[=value]:Effect ('' for none).")
]
NodeSelectorOption = Annotated[
    str, typer.Option("--gpu-node-selector", help="Node label GPU tasks need, key=value ('' for none).")
]
ShmOption = Annotated[str, typer.Option("--shm-size", help="In-memory /dev/shm of train and evaluate ('' for none).")]
ParallelismOption = Annotated[
    int, typer.Option("--train-parallelism", min=1, help="Architectures trained at once (each with --gpus GPUs).")
]
EvaluateGpusOption = Annotated[
    int | None,
    typer.Option(
        "--evaluate-gpus", min=0, help="Accelerators of the evaluate task (default: 1 when --gpus > 0, else 0)."
    ),
]
PullSecretOption = Annotated[
    list[str] | None,
    typer.Option(
        "--image-pull-secret",
        help="Secret (kubernetes.io/dockerconfigjson) every task pulls the image with (repeatable).",
    ),
]
RetriesOption = Annotated[int, typer.Option("--retries", min=0, help="Retries of the fetch and train tasks.")]
SecretOption = Annotated[
    str, typer.Option("--data-secret", help="Kubernetes Secret with the data credentials for the fetch tasks.")
]
SecretKeysOption = Annotated[
    list[str] | None,
    typer.Option(
        "--data-secret-key",
        help="Key of --data-secret given to the fetch tasks as the environment variable of the same name "
        f"(repeatable; default {', '.join(DataSecret().keys)}).",
    ),
]


def _params_json(params: Path, overrides: list[str] | None) -> str:
    from mlic.config import load_config

    return json.dumps(load_config(params, overrides or []).to_dict(), sort_keys=True)


def _pipeline_arguments(items: list[str] | None) -> dict[str, str]:
    """`--param name=value` → pipeline arguments; only the data parameters may be set this way,
    and never with credentials in them: KFP keeps run parameters in plain text, for anyone who can
    list runs, so those go through a Secret (--data-secret)."""
    arguments: dict[str, str] = {}
    for item in items or []:
        name, separator, value = item.partition("=")
        if not separator or name not in DATA_PARAMETERS:
            raise PipelineError(
                f"'{redact(item)}' is not name=value with a known pipeline parameter",
                field="--param",
                fix=f"use one of {', '.join(DATA_PARAMETERS)}; params.yaml keys go through --set",
            )
        if redact(value) != value:
            raise PipelineError(
                f"{name} carries credentials ({redact(value)}): KFP would keep them in the run's parameters, "
                "in plain text",
                field="--param",
                fix="give the URL without them and the credentials through --data-secret (docs/operations.md)",
            )
        arguments[name] = value
    return arguments


def _runtime_image(image: str) -> str:
    """--image, else the runtime image `make images` recorded here, else the default tag."""
    return image or recorded_runtime_image() or DEFAULT_IMAGE


def _check_image(image: str, allow_mutable_tag: bool) -> None:
    """Refuse an image given by tag alone (KFP would serve stale cached results after a rebuild
    under that tag), or only warn when the user accepted that with --allow-mutable-tag."""
    problem = mutable_image_problem(image)
    if problem is None:
        return
    if not allow_mutable_tag:
        raise PipelineError(
            problem,
            field="--image",
            fix="pass --image <registry>/mlic-runtime@sha256:<digest> (`make images REGISTRY=<registry>` pushes "
            "and records it; docs/operations.md), or add --allow-mutable-tag for a try whose cache you do not rely on",
        )
    typer.echo(f"warning: {problem} (--allow-mutable-tag)", err=True)


def _chosen_image(image: str, allow_mutable_tag: bool) -> str:
    """The runtime image (`_runtime_image`), checked (`_check_image`)."""
    chosen = _runtime_image(image)
    _check_image(chosen, allow_mutable_tag)
    return chosen


def _settings(
    *,
    image: str,
    allow_mutable_tag: bool,
    train_cpu: str,
    train_memory: str,
    gpu_type: str,
    gpus: int,
    gpu_toleration: str,
    gpu_node_selector: str,
    shm_size: str,
    train_parallelism: int,
    retries: int,
    no_cache: bool,
    data_secret: str,
    data_secret_key: list[str] | None,
    image_pull_secret: list[str] | None,
    evaluate_gpus: int | None,
) -> BuildSettings:
    """The build settings of `compile` and `submit`, from their shared options (one place, so they cannot drift)."""
    image = _chosen_image(image, allow_mutable_tag)
    train = TrainResources(train_cpu, train_memory, gpu_type, gpus, gpu_toleration, gpu_node_selector, shm_size)
    return BuildSettings(
        image=image,
        train=train,
        cache=not no_cache,
        train_parallelism=train_parallelism,
        retries=retries,
        data_secret=DataSecret(data_secret, tuple(data_secret_key or DataSecret().keys)),
        image_pull_secrets=tuple(image_pull_secret or ()),
        evaluate_accelerators=evaluate_gpus,
    )


def _settings_from(options: dict[str, Any]) -> BuildSettings:
    """The build settings from a command's own parameters (its `locals()` on entry): `compile` and
    `submit` take the same cluster options, and this way they are listed once more only in their
    signatures (typer reads options from there), not again at every call."""
    return _settings(**{name: options[name] for name in inspect.signature(_settings).parameters})


@pipeline_app.command("compile")
def compile_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the pipeline YAML.")
    ] = DEFAULT_COMPILED,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    image: ImageOption = "",
    allow_mutable_tag: MutableTagOption = False,
    train_cpu: CpuOption = DEFAULT_TRAIN.cpu,
    train_memory: MemoryOption = DEFAULT_TRAIN.memory,
    gpu_type: GpuTypeOption = DEFAULT_TRAIN.accelerator_type,
    gpus: GpusOption = DEFAULT_TRAIN.accelerator_count,
    gpu_toleration: TolerationOption = DEFAULT_TRAIN.gpu_toleration,
    gpu_node_selector: NodeSelectorOption = DEFAULT_TRAIN.gpu_node_selector,
    shm_size: ShmOption = DEFAULT_TRAIN.shm_size,
    train_parallelism: ParallelismOption = DEFAULT_SETTINGS.train_parallelism,
    retries: RetriesOption = DEFAULT_SETTINGS.retries,
    no_cache: NoCacheOption = False,
    data_secret: SecretOption = "",
    data_secret_key: SecretKeysOption = None,
    image_pull_secret: PullSecretOption = None,
    evaluate_gpus: EvaluateGpusOption = None,
) -> None:
    """Compile the Kubeflow pipeline to YAML (params.yaml becomes the `params` default)."""
    options = locals()

    def action() -> None:
        from mlic.kubeflow.pipeline import compile_pipeline

        settings = _settings_from(options)
        written = compile_pipeline(settings, _params_json(params, set_), output)
        typer.echo(f"pipeline compiled → {written} (image {settings.image})")

    guarded(action)


@pipeline_app.command("components")
def components_command(
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Folder for the component YAML files.")] = Path(
        "components"
    ),
    image: ImageOption = "",
    allow_mutable_tag: MutableTagOption = False,
) -> None:
    """Write each step's kfp component spec (loadable with kfp.components.load_component_from_file)."""

    def action() -> None:
        from mlic.kubeflow.components import write_component_specs

        chosen = _chosen_image(image, allow_mutable_tag)
        written = write_component_specs(chosen, output_dir)
        typer.echo(f"{len(written)} component specs → {output_dir}/ (image {chosen})")

    guarded(action)


@pipeline_app.command("run-local")
def run_local_command(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    param: ParamOption = None,
    output_dir: Annotated[Path, typer.Option(help="Root of the local runs' outputs.")] = DEFAULT_OUTPUT_DIR,
    image: Annotated[
        str | None,
        typer.Option(help="Run each task in a container of this image (the runtime image; needs a Docker engine)."),
    ] = None,
) -> None:
    """Run the whole pipeline here with kfp.local (same components; this Python environment, or --image)."""

    def action() -> None:
        from mlic.kubeflow.local import run_local

        run = run_local(_params_json(params, set_), _pipeline_arguments(param), output_dir, image)
        typer.echo(run.summary())

    guarded(action)


@pipeline_app.command("submit")
def submit_command(
    host: Annotated[
        str | None, typer.Option(help="KFP API URL (default: $KF_PIPELINES_ENDPOINT, else kubeconfig).")
    ] = None,
    experiment: Annotated[str, typer.Option(help="Experiment to file the run under.")] = "mlic",
    run_name: Annotated[str | None, typer.Option(help="Run name (default: kfp's, from the time).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Profile namespace (multi-user Kubeflow).")] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    param: ParamOption = None,
    image: ImageOption = "",
    allow_mutable_tag: MutableTagOption = False,
    train_cpu: CpuOption = DEFAULT_TRAIN.cpu,
    train_memory: MemoryOption = DEFAULT_TRAIN.memory,
    gpu_type: GpuTypeOption = DEFAULT_TRAIN.accelerator_type,
    gpus: GpusOption = DEFAULT_TRAIN.accelerator_count,
    gpu_toleration: TolerationOption = DEFAULT_TRAIN.gpu_toleration,
    gpu_node_selector: NodeSelectorOption = DEFAULT_TRAIN.gpu_node_selector,
    shm_size: ShmOption = DEFAULT_TRAIN.shm_size,
    train_parallelism: ParallelismOption = DEFAULT_SETTINGS.train_parallelism,
    retries: RetriesOption = DEFAULT_SETTINGS.retries,
    no_cache: NoCacheOption = False,
    data_secret: SecretOption = "",
    data_secret_key: SecretKeysOption = None,
    image_pull_secret: PullSecretOption = None,
    evaluate_gpus: EvaluateGpusOption = None,
) -> None:
    """Compile the pipeline and start a run of it on a Kubeflow Pipelines API.

    The token comes from $KF_PIPELINES_TOKEN, else the file $KF_PIPELINES_SA_TOKEN_PATH names.
    """
    options = locals()

    def action() -> None:
        from mlic.kubeflow.pipeline import compile_pipeline
        from mlic.kubeflow.submit import submit

        params_json = _params_json(params, set_)
        arguments = {"params": params_json, **_pipeline_arguments(param)}
        settings = _settings_from(options)
        with tempfile.TemporaryDirectory(prefix="mlic-submit-") as tmp:
            package = compile_pipeline(settings, params_json, Path(tmp) / "mlic.yaml")
            submission = submit(
                package,
                arguments,
                host=host,
                experiment=experiment,
                run_name=run_name,
                namespace=namespace,
            )
        typer.echo(submission.summary())

    guarded(action)


@pipeline_app.command("trainjob")
def trainjob_command(
    arch: Annotated[str, typer.Option("--arch", help="Architecture to train (a key of `models:` in params.yaml).")],
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Nodes (torchrun's nnodes).")] = 2,
    gpus: Annotated[
        int, typer.Option("--gpus", min=0, help="GPUs per node, one process each (0: CPU nodes).")
    ] = TRAINJOB_RESOURCES.accelerator_count,
    image: ImageOption = "",
    allow_mutable_tag: MutableTagOption = False,
    claim: Annotated[
        str, typer.Option("--claim", help="ReadWriteMany claim holding the project root, mounted at /workspace.")
    ] = TRAINJOB_CLAIM,
    cpu: Annotated[str, typer.Option("--cpu", help="CPU of each node (request = limit).")] = TRAINJOB_RESOURCES.cpu,
    memory: Annotated[
        str, typer.Option("--memory", help="Memory of each node (request = limit).")
    ] = TRAINJOB_RESOURCES.memory,
    shm_size: ShmOption = TRAINJOB_RESOURCES.shm_size,
    ephemeral_storage: Annotated[
        str, typer.Option("--ephemeral-storage", help="Local disk each node requests ('' for none).")
    ] = TRAINJOB_EPHEMERAL_STORAGE,
    gpu_type: GpuTypeOption = TRAINJOB_RESOURCES.accelerator_type,
    gpu_toleration: TolerationOption = TRAINJOB_RESOURCES.gpu_toleration,
    gpu_node_selector: NodeSelectorOption = TRAINJOB_RESOURCES.gpu_node_selector,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the manifest here (default: standard output).")
    ] = None,
) -> None:
    """Render a Kubeflow Trainer v2.3 TrainJob: multi-node DDP training of one architecture
    (`mlic pipeline trainjob --arch msrn --nodes 2 --gpus 4 | kubectl apply -f -`)."""

    def action() -> None:
        from mlic.io import write_text
        from mlic.kubeflow.trainjob import TrainJobSpec, to_yaml

        resources = TrainResources(cpu, memory, gpu_type, gpus, gpu_toleration, gpu_node_selector, shm_size)
        chosen = _runtime_image(image)
        text = to_yaml(TrainJobSpec(arch, nodes, chosen, claim, resources, ephemeral_storage))
        _check_image(chosen, allow_mutable_tag)  # after the spec's own checks, which name their option
        if output is None:
            typer.echo(text, nl=False)
            return
        write_text(output, text)
        typer.echo(f"TrainJob mlic-train-{arch} → {output}", err=True)

    guarded(action)


@pipeline_app.command("images")
def images_command(
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Dockerfile target to build (repeatable; default: both).")
    ] = None,
    registry: Annotated[
        str, typer.Option(help="Push to this registry (host[:port]/path) and record the images by digest.")
    ] = "",
    python_image: Annotated[
        str, typer.Option(help="Base image with Python 3.11 on Debian bookworm (deploy/base-image.sh makes one).")
    ] = DEFAULT_PYTHON_IMAGE,
    serving_torch_index: Annotated[
        str,
        typer.Option(help="Package index the serving image takes torch from (https://download.pytorch.org/whl/cpu)."),
    ] = "",
    ca_bundle: Annotated[
        Path | None, typer.Option(help="CA bundle pip trusts during the build (a TLS-inspecting proxy's).")
    ] = None,
    docker: Annotated[str, typer.Option(envvar="MLIC_DOCKER", help="The docker CLI to build with.")] = "docker",
    record: Annotated[Path, typer.Option(help="Where to record the builds for compile.")] = RECORD_FILE,
) -> None:
    """Build the runtime and serving images with BuildKit, push them with --registry, and record
    them where `mlic pipeline compile` picks the runtime image up."""

    def action() -> None:
        from mlic.kubeflow.images import IMAGE_NAMES, BuildOptions, build, engine_version, write_record

        options = BuildOptions(
            python_image=python_image,
            torch_index={"serving": serving_torch_index},
            ca_bundle=ca_bundle,
            registry=registry,
            docker=docker,
        )
        typer.echo(f"Docker engine {engine_version(options)}")
        built = [build(name, options) for name in target or IMAGE_NAMES]
        write_record(record, built)
        for image in built:
            typer.echo(
                f"{image.target}: {image.reference}  (image {image.image_id}, {image.size_bytes / 1e9:.2f} GB, "
                f"built in {image.build_seconds:.0f} s)"
            )
        typer.echo(f"recorded → {record} (mlic pipeline compile takes the runtime image from it)")

    guarded(action)
