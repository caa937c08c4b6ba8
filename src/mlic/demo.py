"""`mlic demo` (the end of `make demo`): the whole pipeline, a live endpoint answering, and where
the time went.

It runs `dvc repro` (the six steps, each stage only when its inputs changed), serves the packaged
model, asks it about a few test images, shows the metrics, stops the server, and prints how long
each part took: the install (timed by `make install`), every DVC stage, and serving. The timings
are what a person tuning the front door needs, measured on their own machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlic.data.canonical import load_labels, load_split
from mlic.errors import PipelineError
from mlic.evaluation.tables import metrics_table
from mlic.io import read_json
from mlic.paths import Paths
from mlic.serving import client, server

#: Written by `make install` beside the environment it timed.
INSTALL_SECONDS_FILE = Path(".venv") / ".install-seconds"
_RUNNING = re.compile(r"Running stage '(?P<stage>[^']+)'")
_SKIPPED = re.compile(r"Stage '(?P<stage>[^']+)' didn't change, skipping")


@dataclass(frozen=True)
class Timing:
    """One part of the demo: how long it took, or that it had nothing to do."""

    part: str
    seconds: float
    ran: bool = True


def stage_timings(lines: Iterable[str], clock: Callable[[], float] = time.monotonic) -> list[Timing]:
    """Time every stage in `dvc repro`'s output: a stage runs from its "Running stage" line to the
    next one (or the end); stages DVC skips are listed as not run."""
    timings: list[Timing] = []
    current: tuple[str, float] | None = None
    for line in lines:
        running, skipped = _RUNNING.search(line), _SKIPPED.search(line)
        if (running or skipped) and current is not None:
            timings.append(Timing(current[0], clock() - current[1]))
            current = None
        if running:
            current = (running["stage"], clock())
        elif skipped:
            timings.append(Timing(skipped["stage"], 0.0, ran=False))
    if current is not None:
        timings.append(Timing(current[0], clock() - current[1]))
    return timings


def _echoed(lines: Iterable[str]) -> Iterator[str]:
    """The lines, each written to stdout as it passes (the user watches dvc repro as it runs)."""
    for line in lines:
        sys.stdout.write(line)
        yield line


def repro(root: Path) -> list[Timing]:
    """`dvc repro` in `root`, its output passed through as it comes, timed per stage."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None  # asked for with stdout=PIPE
    timings = stage_timings(_echoed(process.stdout))
    if process.wait():
        raise PipelineError(
            f"dvc repro failed (exit {process.returncode})",
            file="dvc.yaml",
            fix="read the failing stage's message above; fix it and run `mlic demo` again (finished stages are kept)",
        )
    return timings


def show_predictions(paths: Paths, count: int) -> None:
    names = load_labels(paths.labels_file).names
    test = load_split(paths.split_file("test"))
    records = test.records[:count]
    images = [test.image_path(r) for r in records]
    answers = client.predict_files(paths, images, url=None, all_scores=False)
    print(f"\nThe endpoint's answers for {len(images)} test images:")
    for record, image, answer in zip(records, images, answers, strict=True):
        print(client.format_answer(image, answer))
        print(f"    truth: {', '.join(names[i] for i in record.labels)}")


def show_metrics(paths: Paths) -> None:
    per_arch = read_json(paths.evaluation_metrics, what="evaluation metrics")
    best = read_json(paths.best_file, what="chosen model")
    print(
        "\nMetrics in percent: val mAP chooses the model, every other column is the test split "
        f"(★ = packaged, gate passed with test mAP {best['metrics']['mAP']:.1f}):"
    )
    print(metrics_table(per_arch, best["arch"]))


def serve_and_ask(paths: Paths, images: int, keep_serving: bool) -> None:
    endpoint = server.start(paths, port=0)
    print(endpoint.describe())
    try:
        show_predictions(paths, images)
        show_metrics(paths)
    finally:
        if not keep_serving:
            server.stop(paths)
            print("\nTorchServe stopped. `make serve` starts it and leaves it running; `make stop` ends it.")


def install_timing(root: Path) -> Timing | None:
    recorded = root / INSTALL_SECONDS_FILE
    if not recorded.is_file():
        return None
    return Timing("install (make install, when .venv was made)", float(recorded.read_text().strip()))


def timing_summary(timings: list[Timing]) -> str:
    """The table printed at the end: every part, then the total of what ran."""
    width = max(len(t.part) for t in timings)
    lines = ["\nWhere the time went:"]
    for timing in timings:
        shown = f"{timing.seconds:7.1f} s" if timing.ran else "    up to date"
        lines.append(f"  {timing.part:<{width}}  {shown}")
    total = sum(t.seconds for t in timings)
    lines.append(f"  {'total':<{width}}  {total:7.1f} s ({int(total // 60)} min {total % 60:.0f} s)")
    return "\n".join(lines)


def run(root: Path, images: int = 5, keep_serving: bool = False) -> list[Timing]:
    """The demo end to end; returns the timings it printed."""
    paths = Paths(root)
    timings = [t for t in [install_timing(root)] if t is not None]
    timings += repro(root)
    started = time.monotonic()
    serve_and_ask(paths, images, keep_serving)
    timings.append(Timing("serve, predict, show", time.monotonic() - started))
    print(timing_summary(timings))
    return timings
