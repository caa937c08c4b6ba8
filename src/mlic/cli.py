"""`mlic <step>`: parses options, calls `mlic.steps.<step>.run`, maps our errors to exit codes.

Heavy imports (torch, great_expectations, kfp) happen inside the commands so `mlic --help` is fast.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlic.cli_common import ParamsOption, RootOption, SetOption, setup_logging, user_errors
from mlic.data.cli import data_app
from mlic.kubeflow.cli import pipeline_app

app = typer.Typer(
    name="mlic",
    help="Multi-label image classification with label-graph models: prepare → validate → graph → "
    "train → evaluate → package, then serve and predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _context(params: Path, overrides: list[str] | None, root: Path) -> tuple[Any, Any]:
    from mlic.config import load_config
    from mlic.paths import Paths

    setup_logging()
    return load_config(params, overrides or []), Paths(root)


def _step_command(name: str, summary: str) -> None:
    """Register `mlic <name>`: load params, run `mlic.steps.<name>.run(config, paths)`, print its summary.

    prepare, validate, graph and package differ only in the step they call, so one body serves.
    """

    def command(
        params: ParamsOption = Path("params.yaml"), set_: SetOption = None, root: RootOption = Path(".")
    ) -> None:
        step = importlib.import_module(f"mlic.steps.{name}")
        config, paths = _context(params, set_, root)
        typer.echo(step.run(config, paths).summary())

    command.__doc__ = summary
    app.command(name)(user_errors(command))


_step_command("prepare", "Import COCO / VOC or generate the built-in benchmark, and split it (data/prepared/).")
_step_command("validate", "Check annotations and images with great-expectations; non-zero exit on any failure.")
_step_command("graph", "Build the label co-occurrence graph and label embeddings (artifacts/graph/).")


@app.command()
@user_errors
def train(
    arch: Annotated[str, typer.Option("--arch", "-a", help="Architecture to train (see `mlic models`).")],
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    root: RootOption = Path("."),
) -> None:
    """Train one architecture (artifacts/models/<arch>/). Under torchrun it trains with DDP."""
    from mlic.steps import train as step

    config, paths = _context(params, set_, root)
    result = step.run(config, paths, arch)
    if result is not None:
        typer.echo(result.summary())


@app.command()
@user_errors
def evaluate(params: ParamsOption = Path("params.yaml"), set_: SetOption = None, root: RootOption = Path(".")) -> None:
    """Score every trained model; pick the one to ship on val mAP and gate its test mAP on the floor."""
    from mlic.errors import GateFailed
    from mlic.steps import evaluate as step

    config, paths = _context(params, set_, root)
    result = step.run(config, paths)
    typer.echo(result.summary())
    if not result.gate_passed:
        raise GateFailed(
            f"test mAP {result.test_map:.2f} of {result.best_arch} (chosen by {result.chosen_by} mAP) is below "
            f"evaluate.min_map {config.evaluate.min_map:.2f}; nothing will be packaged",
            file=str(paths.evaluation_metrics),
            field="evaluate.min_map",
            fix="improve the data or models, or lower evaluate.min_map deliberately",
        )


_step_command("package", "Build the TorchServe archive of the chosen model (artifacts/serving/).")


@app.command()
@user_errors
def serve(
    stop: Annotated[bool, typer.Option("--stop", help="Stop the TorchServe started by `mlic serve`.")] = False,
    port: Annotated[int, typer.Option(help="Inference port (0 = pick a free one).")] = 8080,
    root: RootOption = Path("."),
) -> None:
    """Start TorchServe on 127.0.0.1 with the packaged model, wait until it predicts, print the endpoint."""
    from mlic.paths import Paths
    from mlic.serving import server

    setup_logging()
    paths = Paths(root)
    if stop:
        typer.echo("TorchServe stopped" if server.stop(paths) else "no TorchServe started by `mlic serve` was running")
        return
    endpoint = server.start(paths, port=port)
    typer.echo(endpoint.describe())


@app.command()
@user_errors
def predict(
    images: Annotated[
        list[str], typer.Argument(help="Image files, folders (searched recursively) or globs ('photos/**/*.jpg').")
    ],
    url: Annotated[str | None, typer.Option(help="Prediction URL (default: the one `mlic serve` started).")] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="TorchServe key file for --url (re-read when the token is rejected); else $MLIC_TOKEN."),
    ] = None,
    all_scores: Annotated[bool, typer.Option("--all-scores", help="Print every label's score.")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per image instead of a table.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 4,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for one answer.")] = 130.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries of a 503 or a refused connection, with backoff.")] = 3,
    root: RootOption = Path("."),
) -> None:
    """Send images to the endpoint concurrently; print each one's labels (or its error). Exits
    non-zero when any image failed."""
    import json

    import httpx

    from mlic.paths import Paths
    from mlic.serving import client

    files = client.expand_images(images)
    predictor = client.PredictionClient.for_root(
        Paths(root),
        url=url,
        token_file=token_file,
        all_scores=all_scores,
        concurrency=concurrency,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        retry=client.RetryPolicy(attempts=retries + 1),
    )
    results = predictor.predict_paths(files, progress=sys.stderr.isatty())
    if json_lines:
        for result in results:
            typer.echo(json.dumps(result.to_json()))
    else:
        typer.echo(client.results_table(results))
    failed = [result.error for result in results if result.error is not None]
    if failed:
        first = failed[0]
        summary = f"{len(failed)} of {len(results)} images failed; the first: {first.message}"
        raise type(first)(summary, file=first.file, field=first.field, fix=first.fix)


@app.command()
@user_errors
def demo(
    images: Annotated[int, typer.Option(min=1, help="Test images to send to the endpoint.")] = 5,
    keep_serving: Annotated[bool, typer.Option("--keep-serving", help="Leave TorchServe running afterwards.")] = False,
    root: RootOption = Path("."),
) -> None:
    """The whole pipeline (`dvc repro`), a live endpoint answering, the metrics, and where the time went."""
    from mlic import demo as the_demo

    the_demo.run(root, images=images, keep_serving=keep_serving)


@app.command()
@user_errors
def report(
    rev: Annotated[
        list[str] | None,
        typer.Option(
            "--rev",
            help="A git revision to compare: once, against the workspace; twice, the first against the second.",
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Folder to write (default: reports/report).")] = None,
    root: RootOption = Path("."),
) -> None:
    """An offline report (HTML and Markdown) of the metrics and pictures; with --rev, what changed."""
    from mlic.paths import Paths
    from mlic.report.document import revision_pair, write_report
    from mlic.report.revisions import read_revision

    setup_logging()
    paths = Paths(root)
    earlier, later = revision_pair(rev or [])
    current = read_revision(paths, later)
    before = None if earlier is None else read_revision(paths, earlier)
    typer.echo(write_report(paths, current, before, output or paths.report_dir).summary())


@app.command("models")
@user_errors
def models_command(
    archs: Annotated[list[str] | None, typer.Argument(help="Architectures to show (default: all).")] = None,
    knobs: Annotated[
        bool, typer.Option("--knobs", help="Print each one's knobs: values, default, params.yaml's.")
    ] = False,
    docs: Annotated[
        Path | None,
        typer.Option(help="Rewrite the knob tables of this markdown file (its `<!-- knobs: ARCH -->` blocks)."),
    ] = None,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """List the architectures, or their knobs (`models.<arch>` in params.yaml)."""
    from mlic.config import load_config
    from mlic.knobs import architecture_names, knob_table, with_knob_tables

    names = archs or architecture_names()
    if not (knobs or docs):
        typer.echo("\n".join(names))
        return
    configured = load_config(params).models
    if docs is not None:
        docs.write_text(with_knob_tables(docs.read_text(encoding="utf-8"), configured), encoding="utf-8")
        typer.echo(f"knob tables rewritten in {docs}")
        return
    for arch in names:
        typer.echo(f"{arch}\n{knob_table(arch, configured.of(arch))}\n")


app.add_typer(pipeline_app, name="pipeline", help="Compile, run locally, or submit the Kubeflow pipeline.")
app.add_typer(data_app, name="data", help="Put a dataset under DVC in data/raw/ and point params.yaml at it.")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
