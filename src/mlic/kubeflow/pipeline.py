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

No `from __future__ import annotations` here: kfp reads the pipeline's annotations as real types.
"""

from pathlib import Path

from kfp import compiler, dsl

from mlic.errors import PipelineError
from mlic.kubeflow.components import build_components
from mlic.kubeflow.settings import DATA_PARAMETERS, PIPELINE_NAME, BuildSettings, TrainResources


def _request_training_resources(task: dsl.PipelineTask, resources: TrainResources) -> None:
    try:
        task.set_cpu_request(resources.cpu).set_memory_request(resources.memory)
        if resources.accelerator_count:
            task.set_accelerator_type(resources.accelerator_type).set_accelerator_limit(resources.accelerator_count)
    except ValueError as exc:  # kfp's own check of the Kubernetes quantity strings
        raise PipelineError(
            f"invalid training resources ({exc})",
            field="--train-cpu/--train-memory/--gpus",
            fix="use Kubernetes quantities, e.g. --train-cpu 4 --train-memory 16Gi --gpus 1",
        ) from None


def build_pipeline(settings: BuildSettings, default_params_json: str) -> dsl.graph_component.GraphComponent:
    """The pipeline for one build; `default_params_json` is the `params` default shown in the UI."""
    components = build_components(settings.image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Multi-label image classification with label-graph models: DVC data → trained, "
        "evaluated, gated, TorchServe-packaged model.",
    )
    def mlic(
        params: str = default_params_json,
        data_repo_url: str = DATA_PARAMETERS["data_repo_url"],
        data_rev: str = DATA_PARAMETERS["data_rev"],
        data_path: str = DATA_PARAMETERS["data_path"],
    ) -> dsl.Metrics:
        step_params = components.check_params(params=params).set_caching_options(settings.cache)
        training_plan = components.plan_training(params=params).set_caching_options(settings.cache).after(step_params)

        revision = components.resolve_data_revision(repo_url=data_repo_url, rev=data_rev).set_caching_options(False)
        fetched = components.fetch_data(repo_url=data_repo_url, commit=revision.output, path=data_path)
        fetched.set_caching_options(settings.cache)

        prepared = components.prepare(params=step_params.outputs["prepare"], raw_data=fetched.outputs["data"])
        prepared.set_caching_options(settings.cache)
        prepared_data = prepared.outputs["prepared"]
        validated = components.validate(params=step_params.outputs["validate"], prepared=prepared_data)
        validated.set_caching_options(settings.cache)
        label_graph = components.graph(params=step_params.outputs["graph"], prepared=prepared_data)
        label_graph.set_caching_options(settings.cache).after(validated)  # only validated data reach the models

        with dsl.ParallelFor(training_plan.output) as run:
            trained = components.train(
                params=run.params, arch=run.arch, prepared=prepared_data, graph=label_graph.outputs["graph"]
            )
            trained.set_caching_options(settings.cache)
            _request_training_resources(trained, settings.train)

        evaluated = components.evaluate(
            params=step_params.outputs["evaluate"], prepared=prepared_data, models=dsl.Collected(trained.outputs["model"])
        )
        evaluated.set_caching_options(settings.cache)
        with dsl.If(evaluated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 - kfp builds a condition
            packaged = components.package(params=step_params.outputs["package"], evaluation=evaluated.outputs["evaluation"])
            packaged.set_caching_options(settings.cache)
        return evaluated.outputs["metrics"]

    return mlic


def compile_pipeline(settings: BuildSettings, default_params_json: str, output: Path) -> Path:
    """Write the pipeline's IR YAML (what `kfp` and the KFP UI upload)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(settings, default_params_json), str(output))
    return output
