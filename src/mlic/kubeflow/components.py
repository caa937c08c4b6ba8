"""One kfp v2 Python component per step; each body is a call into `mlic.kubeflow.tasks`.

KFP embeds a Python component's source in the pipeline and runs it with the runtime image's
Python, so a body may only use what it imports itself: each imports `mlic.kubeflow.tasks` and
calls the function of the same name (which runs `mlic.steps.<step>`). Components are built with
`build_components(image)`: the runtime image is a compile setting, and `install_kfp_package=False`
because the image already has the kfp version the pipeline was compiled with.

No `from __future__ import annotations` here: kfp reads these annotations as real types.
"""

from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def check_params(
    params: str,
) -> NamedTuple(
    "StepParams", [("prepare", str), ("validate", str), ("graph", str), ("evaluate", str), ("package", str)]
):
    """Validate params.yaml (JSON) and cut it into the subset each step reads (precise caching)."""
    from mlic.kubeflow import tasks

    return tasks.check_params(params)


def plan_training(params: str) -> list:
    """One loop item per architecture: {"arch": name, "params": that training's params JSON}."""
    from mlic.kubeflow import tasks

    return tasks.plan_training(params)


def resolve_data_revision(repo_url: str, rev: str) -> str:
    """The commit a branch/tag points at now ("" for the built-in data). Never cached."""
    from mlic.kubeflow import tasks

    return tasks.resolve_data_revision(repo_url, rev)


def fetch_data(repo_url: str, commit: str, path: str, data: Output[Dataset]):
    """`dvc get` the repo's data path at a commit (nothing for the built-in data). Cached per commit."""
    from mlic.kubeflow import tasks

    tasks.fetch_data(repo_url, commit, path, data)


def prepare(params: str, raw_data: Input[Dataset], prepared: Output[Dataset]):
    """Import or generate the data and split it (data/prepared/, images included)."""
    from mlic.kubeflow import tasks

    tasks.prepare(params, raw_data, prepared)


def validate(
    params: str,
    prepared: Input[Dataset],
    report: Output[HTML],
    validation: Output[Artifact],
    data_metrics: Output[Metrics],
):
    """Check the prepared data with great-expectations; the task fails on any failed expectation."""
    from mlic.kubeflow import tasks

    tasks.validate(params, prepared, report, validation, data_metrics)


def graph(params: str, prepared: Input[Dataset], graph: Output[Model]):
    """Label co-occurrence graph and label embeddings from the training split."""
    from mlic.kubeflow import tasks

    tasks.graph(params, prepared, graph)


def train(
    params: str,
    arch: str,
    prepared: Input[Dataset],
    graph: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train one architecture (on the GPU the task requests, when there is one)."""
    from mlic.kubeflow import tasks

    tasks.train(params, arch, prepared, graph, model, metrics)


def evaluate(
    params: str,
    prepared: Input[Dataset],
    models: Input[list[Model]],
    metrics: Output[Metrics],
    table: Output[Markdown],
    evaluation: Output[Artifact],
) -> bool:
    """Score every model; returns whether the one chosen on val mAP passes the gate on its test mAP."""
    from mlic.kubeflow import tasks

    return tasks.evaluate(params, prepared, models, metrics, table, evaluation)


def package(params: str, evaluation: Input[Artifact], model_archive: Output[Model]):
    """TorchServe archive of the chosen model, laid out as a KServe storageUri."""
    from mlic.kubeflow import tasks

    tasks.package(params, evaluation, model_archive)


@dataclass(frozen=True)
class Components:
    """The components of one build (one runtime image)."""

    check_params: dsl.base_component.BaseComponent
    plan_training: dsl.base_component.BaseComponent
    resolve_data_revision: dsl.base_component.BaseComponent
    fetch_data: dsl.base_component.BaseComponent
    prepare: dsl.base_component.BaseComponent
    validate: dsl.base_component.BaseComponent
    graph: dsl.base_component.BaseComponent
    train: dsl.base_component.BaseComponent
    evaluate: dsl.base_component.BaseComponent
    package: dsl.base_component.BaseComponent


FUNCTIONS = (
    check_params,
    plan_training,
    resolve_data_revision,
    fetch_data,
    prepare,
    validate,
    graph,
    train,
    evaluate,
    package,
)


def build_components(image: str) -> Components:
    """Every component, running in `image` (which must have mlic and kfp installed)."""
    built = {
        function.__name__: dsl.component(function, base_image=image, install_kfp_package=False)
        for function in FUNCTIONS
    }
    return Components(**built)


def component_file_name(name: str) -> str:
    """`fetch_data` → `fetch-data/component.yaml`: a folder named as kfp names the task, holding the
    spec under the name Kubeflow's component collections use."""
    return f"{name.replace('_', '-')}/component.yaml"


def write_component_specs(image: str, folder: Path) -> list[Path]:
    """Each step's component spec (kfp IR YAML) in `folder`, compiled from the same components the
    pipeline uses, for users who load them into pipelines of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    built = build_components(image)
    written = []
    for spec in fields(Components):
        path = folder / component_file_name(spec.name)
        path.parent.mkdir(exist_ok=True)
        compiler.Compiler().compile(getattr(built, spec.name), str(path))
        written.append(path)
    return written
