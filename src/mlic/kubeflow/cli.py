"""`mlic pipeline compile | run-local | submit`.

kfp is imported inside the commands (`mlic --help` stays fast).
"""

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from mlic.cli_common import ParamsOption, SetOption, guarded
from mlic.errors import PipelineError
from mlic.kubeflow.settings import (
    DATA_PARAMETERS,
    DEFAULT_IMAGE,
    BuildSettings,
    TrainResources,
)

pipeline_app = typer.Typer(no_args_is_help=True, add_completion=False)

DEFAULT_COMPILED = Path("pipelines") / "compiled" / "mlic.yaml"
DEFAULT_TRAIN = TrainResources()
#: Local runs' outputs (.mlic/ is git-ignored).
DEFAULT_OUTPUT_DIR = Path(".mlic") / "kfp-local"

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="Set a pipeline parameter: data_repo_url=URL, data_rev=BRANCH|TAG|SHA, data_path=PATH (repeatable).",
    ),
]
ImageOption = Annotated[str, typer.Option(help="Runtime image every task runs in.")]
CpuOption = Annotated[str, typer.Option("--train-cpu", help="CPU request of each train task.")]
MemoryOption = Annotated[str, typer.Option("--train-memory", help="Memory request of each train task.")]
GpuTypeOption = Annotated[str, typer.Option("--gpu-type", help="Accelerator resource each train task requests.")]
GpusOption = Annotated[int, typer.Option("--gpus", min=0, help="Accelerators per train task (0: train on CPU nodes).")]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Compile with caching off: every task re-runs (default: cache on inputs).")
]


def _params_json(params: Path, overrides: list[str] | None) -> str:
    from mlic.config import load_config

    return json.dumps(load_config(params, overrides or []).to_dict(), sort_keys=True)


def _pipeline_arguments(items: list[str] | None) -> dict[str, str]:
    """`--param name=value` → pipeline arguments; only the data parameters may be set this way."""
    arguments: dict[str, str] = {}
    for item in items or []:
        name, separator, value = item.partition("=")
        if not separator or name not in DATA_PARAMETERS:
            raise PipelineError(
                f"'{item}' is not name=value with a known pipeline parameter",
                field="--param",
                fix=f"use one of {', '.join(DATA_PARAMETERS)}; params.yaml keys go through --set",
            )
        arguments[name] = value
    return arguments


def _settings(image: str, cpu: str, memory: str, gpu_type: str, gpus: int, no_cache: bool) -> BuildSettings:
    return BuildSettings(image=image, train=TrainResources(cpu, memory, gpu_type, gpus), cache=not no_cache)


@pipeline_app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the pipeline YAML.")] = DEFAULT_COMPILED,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    image: ImageOption = DEFAULT_IMAGE,
    train_cpu: CpuOption = DEFAULT_TRAIN.cpu,
    train_memory: MemoryOption = DEFAULT_TRAIN.memory,
    gpu_type: GpuTypeOption = DEFAULT_TRAIN.accelerator_type,
    gpus: GpusOption = DEFAULT_TRAIN.accelerator_count,
    no_cache: NoCacheOption = False,
) -> None:
    """Compile the Kubeflow pipeline to YAML (params.yaml becomes the `params` default)."""

    def action() -> None:
        from mlic.kubeflow.pipeline import compile_pipeline

        settings = _settings(image, train_cpu, train_memory, gpu_type, gpus, no_cache)
        written = compile_pipeline(settings, _params_json(params, set_), output)
        typer.echo(f"pipeline compiled → {written} (image {settings.image})")

    guarded(action)


@pipeline_app.command("run-local")
def run_local_command(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    param: ParamOption = None,
    output_dir: Annotated[Path, typer.Option(help="Root of the local runs' outputs.")] = DEFAULT_OUTPUT_DIR,
) -> None:
    """Run the whole pipeline here with kfp.local (same components, this Python environment)."""

    def action() -> None:
        from mlic.kubeflow.local import run_local

        run = run_local(_params_json(params, set_), _pipeline_arguments(param), output_dir)
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
    image: ImageOption = DEFAULT_IMAGE,
    train_cpu: CpuOption = DEFAULT_TRAIN.cpu,
    train_memory: MemoryOption = DEFAULT_TRAIN.memory,
    gpu_type: GpuTypeOption = DEFAULT_TRAIN.accelerator_type,
    gpus: GpusOption = DEFAULT_TRAIN.accelerator_count,
    no_cache: NoCacheOption = False,
) -> None:
    """Compile the pipeline and start a run of it on a Kubeflow Pipelines API.

    The token comes from $KF_PIPELINES_TOKEN, else the file $KF_PIPELINES_SA_TOKEN_PATH names.
    """

    def action() -> None:
        from mlic.kubeflow.pipeline import compile_pipeline
        from mlic.kubeflow.submit import submit

        params_json = _params_json(params, set_)
        arguments = {"params": params_json, **_pipeline_arguments(param)}
        settings = _settings(image, train_cpu, train_memory, gpu_type, gpus, no_cache)
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
