"""What each pipeline component does, as typed functions; the component bodies only call these.

KFP ships a Python component's *source* to the pod, so the components in `components.py` are
one-line imports of these functions: the logic lives in the installed package, which the runtime
image carries and kfp.local runs here — the same code either way. Each function stages its input
artifacts into a temporary project root (`layout`), runs `mlic.steps.<step>.run` there, and copies
the step's outputs into its output artifacts (and logs its summary) before the temporary root is
gone; small facts go to artifact metadata and `Metrics`.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from mlic.config import Config
from mlic.errors import PipelineError
from mlic.io import read_json, write_json, write_text
from mlic.kubeflow import fetch, layout
from mlic.kubeflow.params import parse_params, plan
from mlic.urls import redact

log = logging.getLogger(__name__)

#: Written into every fetched-data artifact: what was fetched (and an empty fetch is still a folder).
FETCH_MANIFEST = "fetch.json"


class ArtifactLike(Protocol):
    """The part of a kfp `dsl.Artifact` these functions use."""

    path: str
    uri: str
    metadata: dict[str, Any]


class MetricsLike(ArtifactLike, Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


def _config(params_json: str, step: str) -> Config:
    """The step's params subset, validated (logging is set up by kfp's executor: INFO to stdout)."""
    return parse_params(params_json, source=f"params of the {step} task")


def _folder(artifact: ArtifactLike) -> Path:
    folder = Path(artifact.path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _log_numbers(metrics: MetricsLike, values: Mapping[str, Any], prefix: str = "") -> None:
    """Every number of a (nested) mapping as one metric, keys joined by '.'; other values skipped."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _log_numbers(metrics, value, f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(name, float(value))


def check_params(params_json: str) -> tuple[str, str, str, str, str]:
    """Fail the run at its first task on bad params; hand each step its own subset."""
    steps = plan(params_json)
    return steps.prepare, steps.validate, steps.graph, steps.evaluate, steps.package


def plan_training(params_json: str) -> list[dict[str, str]]:
    """One item per architecture for the training loop (its own params subset inside)."""
    return plan(params_json).train


def resolve_data_revision(repo_url: str, rev: str) -> str:
    return fetch.resolve_revision(repo_url, rev)


def fetch_data(repo_url: str, commit: str, path: str, data: ArtifactLike) -> None:
    """The repo's DVC-tracked `path` at `commit`, or only a manifest for the built-in source.

    The metadata (set first, so a failed fetch still says what it tried) holds the URL without
    its credentials.
    """
    target = _folder(data)
    manifest = {"repo_url": redact(repo_url), "commit": commit, "path": path if repo_url else ""}
    data.metadata.update(manifest)
    if repo_url:
        fetch.fetch(repo_url, commit, path, target)
    else:
        log.info("no data repository given: the prepare task uses the built-in synthetic source")
    write_json(target / FETCH_MANIFEST, manifest)


def _check_source(config: Config, raw_data: ArtifactLike) -> None:
    """A real dataset needs fetched data (or an absolute path the cluster mounts into the pod)."""
    data = config.data
    if data.source != "synthetic" and not raw_data.metadata.get("repo_url") and not Path(str(data.path)).is_absolute():
        raise PipelineError(
            f"data.source is '{data.source}' but the run fetched no data",
            field="data_repo_url",
            fix="pass the data repository (--param data_repo_url=... data_path=...), or use data.source: synthetic",
        )


def prepare(params_json: str, raw_data: ArtifactLike, prepared: ArtifactLike) -> None:
    from mlic.steps import prepare as step

    config = _config(params_json, "prepare")
    _check_source(config, raw_data)
    with layout.staged_root(Path(raw_data.path)) as paths:
        result = step.run(config, paths)
        copied = layout.make_portable(paths)
        if copied:
            log.info("copied %d images into the prepared data (they lived outside it)", copied)
        layout.export(paths, [paths.prepared], _folder(prepared))
        log.info(result.summary())
    prepared.metadata.update({"source": result.source, "labels": result.num_labels, "images": result.split_sizes})


def validate(
    params_json: str, prepared: ArtifactLike, report: ArtifactLike, validation: ArtifactLike, data_metrics: MetricsLike
) -> None:
    """A failed expectation fails the task; its log holds the table of failures (file, field, value, rule)."""
    from mlic.steps import validate as step

    config = _config(params_json, "validate")
    with layout.staged_root(Path(prepared.path)) as paths:
        result = step.run(config, paths)
        layout.export(paths, [paths.validation_reports, paths.data_metrics, paths.label_frequency], _folder(validation))
        shutil.copy2(result.report, report.path)
        counts = read_json(paths.data_metrics, what="data metrics")
        log.info(result.summary())
    # Per-label counts (80 for COCO) stay in the validation artifact's metrics/label_frequency.csv.
    _log_numbers(data_metrics, counts)


def graph(params_json: str, prepared: ArtifactLike, graph: ArtifactLike) -> None:
    from mlic.steps import graph as step

    config = _config(params_json, "graph")
    with layout.staged_root(Path(prepared.path)) as paths:
        result = step.run(config, paths)
        layout.export(paths, [paths.graph_dir], _folder(graph))
        log.info(result.summary())
    graph.metadata.update({"labels": result.num_classes, "edges": result.num_edges})


def train(
    params_json: str, arch: str, prepared: ArtifactLike, graph: ArtifactLike, model: ArtifactLike, metrics: MetricsLike
) -> None:
    from mlic.steps import train as step

    config = _config(params_json, f"train {arch}")
    with layout.staged_root(Path(prepared.path), Path(graph.path)) as paths:
        result = step.run(config, paths, arch)
        assert result is not None, "a KFP train task is one process, so it is rank 0"
        layout.export(paths, [paths.model_dir(arch)], _folder(model))
        log.info(result.summary())
    model.metadata["arch"] = arch
    _log_numbers(metrics, dataclasses.asdict(result))  # loss, validation mAP, timings


def evaluate(
    params_json: str,
    prepared: ArtifactLike,
    models: list[ArtifactLike],
    metrics: MetricsLike,
    table: ArtifactLike,
    evaluation: ArtifactLike,
) -> bool:
    """Score every model; the gate is the return value (a parameter, so `dsl.If` can test it).

    The evaluation artifact holds the metric files and plots, and — only when the gate passes —
    `artifacts/best.json` with the chosen model, which is all the package task needs.
    """
    from mlic.steps import evaluate as step

    config = _config(params_json, "evaluate")
    with layout.staged_root(Path(prepared.path), *(Path(model.path) for model in models)) as paths:
        result = step.run(config, paths)
        outputs = [paths.evaluation_metrics, paths.per_class_metrics, paths.plots_dir]
        if result.gate_passed:
            outputs += [paths.best_file, paths.model_dir(result.best_arch)]
        layout.export(paths, outputs, _folder(evaluation))
        summary = result.summary()
    log.info(summary)
    write_text(table.path, summary + "\n")
    _log_numbers(metrics, result.per_arch)
    metrics.log_metric("best_mAP", float(result.test_map))  # the chosen model's test mAP, the gated figure
    metrics.log_metric("gate_passed", float(result.gate_passed))
    evaluation.metadata.update({"best_arch": result.best_arch, "gate_passed": result.gate_passed})
    return bool(result.gate_passed)


def storage_uri(artifact_uri: str) -> str:
    """The artifact's location as KServe's storage initializer names it (MinIO speaks S3)."""
    return "s3://" + artifact_uri.removeprefix("minio://") if artifact_uri.startswith("minio://") else artifact_uri


def package(params_json: str, evaluation: ArtifactLike, model_archive: ArtifactLike) -> None:
    """Build and verify the .mar; the artifact is laid out as a KServe storageUri (kserve.py)."""
    from mlic.kubeflow import kserve
    from mlic.steps import package as step

    config = _config(params_json, "package")
    with layout.staged_root(Path(evaluation.path)) as paths:
        result = step.run(config, paths)
        kserve.write_kserve_layout(paths, config.package, _folder(model_archive))
        log.info(result.summary())
    model_archive.metadata.update(
        {
            "model_name": result.model_name,
            "version": result.version,
            "arch": result.arch,
            "storage_uri": storage_uri(model_archive.uri),
        }
    )
