"""The mlic pipeline: fetch → prepare → validate → graph → train per architecture → evaluate →
package when the mAP gate passes.

Choices (docs/operations.md tells operators what they mean):

- **Training resources are compile settings**, not pipeline parameters. kfp 2.17 accepts a
  pipeline parameter in `set_cpu_request`/`set_memory_request`/`set_accelerator_*`, but inside a
  `dsl.ParallelFor` the compiler does not pass it into the loop: the IR refers to a loop input
  that is never declared, and kfp.local fails with "Parent pipeline input argument
  'pipelinechannel--…' not found". Constants also compile to both the old and the new IR resource
  fields, which older KFP backends need.
- **Artifacts, not a run workspace** (`dsl.PipelineConfig(workspace=...)`): artifacts give lineage
  in the UI and cache keys that change when the data change; workspace paths are plain strings,
  so a cached train task could not see new data, the parallel GPU tasks would need a
  ReadWriteMany volume, and kfp.local deletes the workspace when a run ends. The price is one
  upload/download of the prepared data per task that reads it.
- **Single return values feed the loop and the gate**: kfp.local 2.17 resolves a `ParallelFor`'s
  items and a `dsl.If` condition only from a task's single return value (`Output`), not from a
  NamedTuple field (the condition then silently evaluates to False). So `plan-training` returns the
  list of trainings and `evaluate` returns the gate; both work the same on a cluster.
- **Caching per task**: the revision lookup never caches (a branch moves); everything else caches
  on its inputs, which are precise — the data commit, the params subset each step reads
  (`params.py`), and upstream artifacts — so changing one model's knobs retrains only that model.
  `BuildSettings.cache=False` (`--no-cache`) compiles every task uncached: kfp.Client's run-level
  `enable_caching` override reaches only top-level tasks, not those in the loop or the gate.

- **Cluster placement through kfp-kubernetes** (the IR's second document, which kfp.local ignores):
  GPU tasks (train, and evaluate when training has GPUs) get the GPU nodes' toleration and label
  and an in-memory /dev/shm; the data tasks get the data credentials from a Secret, so no token
  needs to travel in a run parameter.
- **Bounded training loop and retries**: `parallelism` keeps the loop from asking for every
  architecture's GPUs at once; fetch and train, which fail transiently (a flaky remote, a lost
  node), are retried with backoff; the others would fail the same way again.

No `from __future__ import annotations` here: kfp reads the pipeline's annotations as real types.
"""

from pathlib import Path

from kfp import compiler, dsl, kubernetes

from mlic.errors import PipelineError
from mlic.kubeflow.components import build_components
from mlic.kubeflow.settings import (
    DATA_PARAMETERS,
    MIN_BACKEND_VERSION,
    PIPELINE_NAME,
    SHM_PATH,
    BuildSettings,
    DataSecret,
    Requests,
    TrainResources,
    node_selector,
    toleration,
)

#: Labels on every task's pod (the Kubernetes recommended ones); the component label is the task's name.
POD_LABELS = {"app.kubernetes.io/name": PIPELINE_NAME, "app.kubernetes.io/part-of": "mlic"}

#: Retries of a task wait 60 s, doubling each time; Argo stops retrying `max` after the task began,
#: so it is a day: a training that fails after hours must still get its retry.
RETRY_BACKOFF = {"backoff_duration": "60s", "backoff_max_duration": "86400s"}


def _request(task: dsl.PipelineTask, requests: Requests, accelerators: int = 0, accelerator_type: str = "") -> None:
    """Requests, and limits equal to them: the pod's QoS class is Guaranteed, so under node pressure
    the kubelet evicts it last (a training hours in), and no task can starve its neighbours."""
    try:
        task.set_cpu_request(requests.cpu).set_memory_request(requests.memory)
        task.set_cpu_limit(requests.cpu).set_memory_limit(requests.memory)
        if accelerators:
            task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerators)
    except ValueError as exc:  # kfp's own check of the Kubernetes quantity strings
        raise PipelineError(
            f"invalid resources for task {task.name}: cpu '{requests.cpu}', memory '{requests.memory}' ({exc})",
            field="--train-cpu/--train-memory/--gpus",
            fix="use Kubernetes quantities, e.g. --train-cpu 4 --train-memory 16Gi --gpus 1",
        ) from None


def _on_accelerators(task: dsl.PipelineTask, requests: Requests, train: TrainResources, accelerators: int) -> None:
    """Requests, the GPU nodes' toleration and label, and an in-memory /dev/shm for DataLoader workers."""
    _request(task, requests, accelerators, train.accelerator_type)
    if accelerators and train.gpu_toleration:
        kubernetes.add_toleration(task, **toleration(train.gpu_toleration))
    if accelerators and train.gpu_node_selector:
        kubernetes.add_node_selector(task, *node_selector(train.gpu_node_selector))
    if train.shm_size:
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path=SHM_PATH, medium="Memory", size_limit=train.shm_size
        )


def _with_secret(task: dsl.PipelineTask, secret: DataSecret) -> None:
    """The data credentials as environment variables of the task, never as pipeline parameters."""
    if secret.name:
        kubernetes.use_secret_as_env(task, secret_name=secret.name, secret_key_to_env={key: key for key in secret.keys})


def build_pipeline(settings: BuildSettings, default_params_json: str) -> dsl.graph_component.GraphComponent:
    """The pipeline for one build; `default_params_json` is the `params` default shown in the UI."""
    components = build_components(settings.image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Multi-label image classification with label-graph models: DVC data → trained, "
        "evaluated, gated, TorchServe-packaged model. Needs a KFP backend >= "
        + ".".join(map(str, MIN_BACKEND_VERSION))
        + ".",
    )
    def mlic(
        params: str = default_params_json,
        data_repo_url: str = DATA_PARAMETERS["data_repo_url"],
        data_rev: str = DATA_PARAMETERS["data_rev"],
        data_path: str = DATA_PARAMETERS["data_path"],
    ) -> dsl.Metrics:
        def on_cluster(task: dsl.PipelineTask) -> dsl.PipelineTask:
            """The registry credentials the task's pod pulls the image with, if any, and the labels
            that tell its pod apart (network policies, quotas and cost reports select on them)."""
            if settings.image_pull_secrets:
                kubernetes.set_image_pull_secrets(task, list(settings.image_pull_secrets))
            for key, value in {**POD_LABELS, "app.kubernetes.io/component": task.name}.items():
                kubernetes.add_pod_label(task, key, value)
            return task

        def step(task: dsl.PipelineTask, cache: bool = settings.cache) -> dsl.PipelineTask:
            """Caching, the task's CPU/memory requests (settings.requests, by task name), pull secrets, labels."""
            _request(task, settings.requests[task.name])
            return on_cluster(task).set_caching_options(cache)

        step_params = step(components.check_params(params=params))
        training_plan = step(components.plan_training(params=params)).after(step_params)

        revision = step(components.resolve_data_revision(repo_url=data_repo_url, rev=data_rev), cache=False)
        _with_secret(revision, settings.data_secret)
        fetched = step(components.fetch_data(repo_url=data_repo_url, commit=revision.output, path=data_path))
        _with_secret(fetched, settings.data_secret)
        fetched.set_retry(settings.retries, **RETRY_BACKOFF)

        prepared = step(components.prepare(params=step_params.outputs["prepare"], raw_data=fetched.outputs["data"]))
        prepared_data = prepared.outputs["prepared"]
        validated = step(components.validate(params=step_params.outputs["validate"], prepared=prepared_data))
        label_graph = step(components.graph(params=step_params.outputs["graph"], prepared=prepared_data))
        label_graph.after(validated)  # only validated data reach the models

        train = settings.train
        with dsl.ParallelFor(training_plan.output, parallelism=settings.train_parallelism) as run:
            trained = components.train(
                params=run.params, arch=run.arch, prepared=prepared_data, graph=label_graph.outputs["graph"]
            )
            on_cluster(trained).set_caching_options(settings.cache).set_retry(settings.retries, **RETRY_BACKOFF)
            _on_accelerators(trained, Requests(train.cpu, train.memory), train, train.accelerator_count)

        evaluated = components.evaluate(
            params=step_params.outputs["evaluate"],
            prepared=prepared_data,
            models=dsl.Collected(trained.outputs["model"]),
        )
        on_cluster(evaluated).set_caching_options(settings.cache)
        # Scoring every model on the test split: as asked, else one GPU when training has them.
        evaluate_gpus = settings.evaluate_accelerators
        if evaluate_gpus is None:
            evaluate_gpus = min(train.accelerator_count, 1)
        _on_accelerators(evaluated, settings.requests["evaluate"], train, evaluate_gpus)
        with dsl.If(evaluated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - kfp builds a condition
            step(components.package(params=step_params.outputs["package"], evaluation=evaluated.outputs["evaluation"]))
        return evaluated.outputs["metrics"]

    return mlic


def compile_pipeline(settings: BuildSettings, default_params_json: str, output: Path) -> Path:
    """Write the pipeline's IR YAML (what `kfp` and the KFP UI upload)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(settings, default_params_json), str(output))
    return output
