"""Run the whole pipeline here with kfp.local: same components, same code as on a cluster.

`SubprocessRunner(use_venv=False)` runs each task as a subprocess of this Python environment (the
runtime image's role is played by the current venv). Given an image, kfp.local's `DockerRunner`
runs each task in a container of it instead (what a cluster's pod runs), as the calling user so
that the outputs it writes into the bind-mounted run folder are theirs, with no network (the
built-in benchmark needs none; a data repository does: then the engine's default network). Resource
requests have no effect locally. Every task runs (kfp.local's cache is off) so that one folder
holds the whole run.
"""

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlic.errors import PipelineError
from mlic.kubeflow.pipeline import BuildSettings, build_pipeline


@dataclass(frozen=True)
class LocalRun:
    """Where a local run put its outputs, and what it measured."""

    run_dir: Path
    #: The evaluate task's Metrics artifact: every architecture's metrics, best_mAP, gate_passed.
    metrics: dict[str, float]
    evaluation_table: str
    gate_passed: bool
    #: The packaged model folder (KServe layout), None when the gate stopped the run.
    model_archive: Path | None

    def summary(self) -> str:
        lines = [f"pipeline outputs: {self.run_dir} (one folder per task)", "", self.evaluation_table.rstrip()]
        lines.append(
            f"metrics artifact: {len(self.metrics)} values, best_mAP {self.metrics['best_mAP']:.2f}, "
            f"gate_passed {self.gate_passed}"
        )
        if self.model_archive is not None:
            lines.append(f"packaged model (KServe storageUri layout): {self.model_archive}")
        else:
            lines.append("not packaged: the mAP gate failed (evaluate.min_map)")
        return "\n".join(lines)


@contextlib.contextmanager
def _root_logger_restored() -> Iterator[None]:
    """Give the root logger back as it was: kfp.local swaps its handlers and logs outside its own guard.

    Left alone, kfp.local leaves a root handler bound to the stream that was stderr during the run;
    in a long-lived process (a notebook, a test session) every later log line then goes to that
    stream, closed by then, and prints a "Logging error" traceback instead of the message.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _runner(image: str | None, arguments: dict[str, str]) -> object:
    """This environment's subprocesses, or containers of `image` (see the module docstring)."""
    from kfp import local

    if image is None:
        return local.SubprocessRunner(use_venv=False)
    return local.DockerRunner(
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"HOME": "/tmp"},  # the calling user has no home in the image
        network_mode="default" if arguments.get("data_repo_url") else "none",
    )


def run_local(params_json: str, arguments: dict[str, str], output_dir: Path, image: str | None = None) -> LocalRun:
    """Run the pipeline to the end, each task in `image` when given; a failed task raises
    PipelineError (its log is printed above)."""
    from kfp import local

    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    local.init(runner=_runner(image, arguments), pipeline_root=str(output_dir), raise_on_error=True)
    before = set(output_dir.iterdir())
    pipeline = build_pipeline(BuildSettings(image=image) if image else BuildSettings(), params_json)
    with _root_logger_restored(), warnings.catch_warnings():
        # Expected here: our image is a Python image (kfp.local guesses from its name), and resource
        # requests are for the cluster (the module docstring says so).
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        warnings.filterwarnings(
            "ignore", message=".*have no effect in the current local runner.*", category=UserWarning
        )
        try:
            task = pipeline(params=params_json, **arguments)
        except RuntimeError as exc:
            raise PipelineError(
                f"local pipeline run failed: {exc}", file=output_dir, fix="read the failed task's log above"
            ) from None
    (run_dir,) = set(output_dir.iterdir()) - before
    # kfp.local writes each output at <run>/<task path>/<output name>: the table sits beside the metrics.
    metrics = task.output
    table = (Path(metrics.path).parent / "table").read_text(encoding="utf-8")
    model_archive = next(run_dir.glob("**/package/model_archive"), None)
    return LocalRun(
        run_dir=run_dir,
        metrics=dict(metrics.metadata),
        evaluation_table=table,
        gate_passed=bool(metrics.metadata["gate_passed"]),
        model_archive=model_archive,
    )
