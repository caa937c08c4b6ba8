"""Serving under bounded load: a real TorchServe with the packaged model, on 127.0.0.1.

    python bench/serving.py                          # the project in ., after `mlic package`
    python bench/serving.py --root PROJECT --requests 200 --concurrency 1 4 16

1. The packaged model as `params.yaml` configures it (`package.batch_size`, `max_batch_delay_ms`,
   `workers`), at each concurrency: a fixed number of requests (raw image bytes, httpx + asyncio
   through `mlic.serving.client`), throughput and p50/p95/p99 latency.
2. The same model in process (`mlic.serving.predictor`: decode, transform, one forward pass per
   batch of `package.batch_size`): the ceiling the server is compared with (served ÷ in-process).
3. A sweep of batch size × batch delay × workers at one concurrency: the best setting for this
   machine, to put into params.yaml `package:`.

Requests are the same few JPEGs (noise, 256×256, so decoding is real work) sent round-robin; the
first `concurrency` answers of every run are a warm-up and not counted. Every figure is the best of
`--rounds` runs (the concurrencies interleaved round by round): other processes only ever add
time, so the best run is the least disturbed one; the report lists every round's images/s, whose
spread is the noise to read the differences against. Every TorchServe is stopped before the next
starts. Writes the report (.md), its numbers (.json) and a
latency-vs-concurrency picture (.png) beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mlic.config import PackageConfig, load_config
from mlic.errors import ServingError
from mlic.paths import Paths
from mlic.serving import server
from mlic.serving.archive import archive_path, read_properties, serving_properties, write_properties
from mlic.serving.client import KeyFileToken, PredictionClient, RetryPolicy
from mlic.serving.predictor import ServedModel

ROOT = Path(__file__).resolve().parents[1]
PERCENTILES = (50, 95, 99)
IMAGE_COUNT = 4
#: The head-to-head gain that justifies changing the packaged defaults.
SWITCH_GAIN = 0.10
#: Raw numbers only: a retried request would hide the 503s the report should show.
NO_RETRY = RetryPolicy(attempts=1)
#: What serving owes the in-process model: throughput at the highest concurrency ≥ this share of it,
#: and p99 latency there ≤ this multiple of p50 alone (a bounded queue, not a growing one).
THROUGHPUT_SHARE = 0.8
P99_OVER_P50 = 4.0


@dataclass(frozen=True)
class Load:
    """One run: `requests` answers counted at `concurrency` against one server setting."""

    batch_size: int
    max_batch_delay_ms: int
    workers: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    #: images/s of every round of this setting and concurrency; this Load is the best of them.
    rounds: list[float]

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: int) -> float:
        return float(np.percentile(self.latencies_ms, q))

    def summary(self) -> dict[str, float | int]:
        figures = {f"p{q}_ms": round(self.percentile(q), 1) for q in PERCENTILES}
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("latencies_ms", "rounds")},
            "images_per_s": round(self.throughput, 2),
            "rounds": [round(value, 2) for value in self.rounds],
            **figures,
        }


def images() -> list[bytes]:
    """A few 256×256 noise JPEGs: decoding and resizing are part of every request."""
    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(IMAGE_COUNT):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


def settings_of(package: PackageConfig | Load) -> tuple[int, int, int]:
    """(batch_size, max_batch_delay_ms, workers)."""
    return package.batch_size, package.max_batch_delay_ms, package.workers


@contextlib.contextmanager
def serving_with(root: Path, package: PackageConfig) -> Iterator[server.Endpoint]:
    """A TorchServe on free ports with `package`'s batching and workers: the project's archive in a
    scratch project whose config.properties is the one `mlic package` would write for them."""
    source = Paths(root)
    with tempfile.TemporaryDirectory(prefix="mlic-bench-serving-") as scratch:
        paths = Paths(Path(scratch))
        paths.model_store.mkdir(parents=True)
        shutil.copy2(archive_path(source.model_store, package.model_name), paths.model_store)
        write_properties(paths.serving_config, serving_properties(package), "bench/serving.py")
        with server.serving(paths, port=0) as endpoint:
            yield endpoint


def _client(endpoint: server.Endpoint, **options: Any) -> PredictionClient:
    """The client of `endpoint`, its key file renewed when expired."""
    return PredictionClient(
        endpoint.prediction_url, KeyFileToken(endpoint.key_file, endpoint.management_url), **options
    )


async def _load(
    endpoint: server.Endpoint, bodies: Sequence[bytes], concurrency: int, requests: int
) -> tuple[list[float], int, float]:
    """`concurrency` workers send `requests` answers' worth (after a warm-up): latencies, errors, seconds."""
    client = _client(endpoint, retry=NO_RETRY, concurrency=concurrency)
    async with client.http_client() as http:
        await asyncio.gather(*(client.predict(http, bodies[i % len(bodies)], "warm-up") for i in range(concurrency)))
        queue = iter(range(requests))
        latencies: list[float] = []
        errors = 0

        async def worker() -> None:
            nonlocal errors
            for index in queue:
                result = await client.predict(http, bodies[index % len(bodies)], f"request {index}")
                latencies.append(result.seconds * 1000)
                errors += not result.ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started


async def _answer(endpoint: server.Endpoint, body: bytes) -> dict[str, object] | None:
    """The server's answer to one image sent alone (None when it failed)."""
    client = _client(endpoint)
    async with client.http_client() as http:
        return (await client.predict(http, body, "answer check")).answer


def measure(
    root: Path, packages: Sequence[PackageConfig], concurrencies: Sequence[int], requests: int, rounds: int
) -> tuple[list[Load], bool]:
    """A server per setting, all up at once; each round loads every server at every concurrency in
    turn (so drift in the machine's other load hits all of them alike); per setting and
    concurrency the best round, carrying every round's images/s. Also whether every server
    answered the first image alone identically before and after its load (a worker that degraded,
    or answers that leaked between requests, would differ)."""
    runs: dict[tuple[int, int], list[Load]] = {}
    first = images()[0]
    with contextlib.ExitStack() as servers:
        endpoints = [servers.enter_context(serving_with(root, package)) for package in packages]
        before = [asyncio.run(_answer(endpoint, first)) for endpoint in endpoints]
        for _ in range(rounds):
            for index, (package, endpoint) in enumerate(zip(packages, endpoints, strict=True)):
                for concurrency in concurrencies:
                    latencies, errors, seconds = asyncio.run(_load(endpoint, images(), concurrency, requests))
                    load = Load(*settings_of(package), concurrency, requests, errors, seconds, latencies, [])
                    runs.setdefault((index, concurrency), []).append(load)
        after = [asyncio.run(_answer(endpoint, first)) for endpoint in endpoints]
    stable = all(answer is not None for answer in before) and before == after
    loads = []
    for tries in runs.values():
        best = max(tries, key=lambda load: load.throughput)
        loads.append(replace(best, rounds=[load.throughput for load in tries]))
        figures = f"{best.throughput:.1f} images/s [{_rounds(loads[-1])}]"
        print(f"  {settings_of(best)} × {best.concurrency}: {figures}", flush=True)
    return loads, stable


def targets(loads: Sequence[Load], in_process: float, stable: bool) -> list[str]:
    """The serving targets, each with its figures and whether this run meets it."""
    alone = min(loads, key=lambda load: load.concurrency)
    busiest = max(loads, key=lambda load: load.concurrency)
    share = busiest.throughput / in_process
    bound = P99_OVER_P50 * alone.percentile(50)
    errors = sum(load.errors for load in loads)

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        f"- throughput at concurrency {busiest.concurrency} ≥ {THROUGHPUT_SHARE} × in-process: "
        f"{busiest.throughput:.1f} / {in_process:.1f} images/s = {share:.2f} × — {met(share >= THROUGHPUT_SHARE)}",
        f"- p99 at concurrency {busiest.concurrency} ≤ {P99_OVER_P50:g} × p50 at concurrency {alone.concurrency}: "
        f"{busiest.percentile(99):.0f} ms against {bound:.0f} ms — {met(busiest.percentile(99) <= bound)}",
        f"- no errors under load: {errors} — {met(errors == 0)}",
        f"- the first image answered alike before and after the load: {'yes' if stable else 'no'} — {met(stable)}",
    ]


def in_process_throughput(root: Path, package: PackageConfig, requests: int, rounds: int) -> float:
    """Images/s through `mlic.serving.predictor` alone: decode + transform each image, one forward
    pass per batch of `package.batch_size`, over `requests` images (after one warm-up batch); the
    best of `rounds`."""
    bodies = images()
    with tempfile.TemporaryDirectory(prefix="mlic-bench-model-") as unpacked:
        with zipfile.ZipFile(archive_path(Paths(root).model_store, package.model_name)) as bundle:
            bundle.extractall(unpacked)
        served = ServedModel.load(Path(unpacked))

    def batch(start: int, size: int) -> None:
        inputs = [served.to_input(bodies[(start + i) % len(bodies)], "bench") for i in range(size)]
        served.probabilities(torch.stack(inputs))

    def one_round() -> float:
        started = time.perf_counter()
        for start in range(0, requests, package.batch_size):
            batch(start, min(package.batch_size, requests - start))
        return requests / (time.perf_counter() - started)

    batch(0, package.batch_size)
    return max(one_round() for _ in range(rounds))


def model_description(root: Path, package: PackageConfig) -> str:
    with zipfile.ZipFile(archive_path(Paths(root).model_store, package.model_name)) as bundle:
        spec = json.loads(bundle.read("config.json"))
    labels = len(spec.get("label_names", []))
    return f"{spec.get('arch', '?')} on {spec.get('backbone', '?')}, {spec.get('image_size', '?')} px, {labels} labels"


def best_of(sweep: Sequence[Load]) -> Load:
    """Most images/s; of equals (within 5 %), the lower p95."""
    top = max(load.throughput for load in sweep)
    return min((load for load in sweep if load.throughput >= 0.95 * top), key=lambda load: load.percentile(95))


def verdict(configured: PackageConfig, head_to_head: Sequence[Load]) -> str:
    """Whether the sweep's best should replace params.yaml's setting: only when, measured side by
    side, it serves at least SWITCH_GAIN more images/s (less is within this machine's noise)."""
    if len(head_to_head) < 2:
        return f"params.yaml's setting {settings_of(configured)} is the sweep's best: keep it."
    current, challenger = head_to_head
    gain = challenger.throughput / current.throughput
    side_by_side = (
        f"Head to head (both servers up, rounds interleaved, concurrency {current.concurrency}): params.yaml's "
        f"{settings_of(current)} {current.throughput:.1f} images/s (p95 {current.percentile(95):.0f} ms), the sweep's "
        f"best {settings_of(challenger)} {challenger.throughput:.1f} images/s "
        f"(p95 {challenger.percentile(95):.0f} ms): "
        f"{gain:.2f} ×"
    )
    if gain >= 1 + SWITCH_GAIN:
        return f"{side_by_side}; switch params.yaml `package:` to the sweep's best."
    return f"{side_by_side}; under {SWITCH_GAIN:.0%} more: keep params.yaml's setting."


def plot(loads: Sequence[Load], output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    concurrencies = [load.concurrency for load in loads]
    for q in PERCENTILES:
        axis.plot(concurrencies, [load.percentile(q) for load in loads], marker="o", label=f"p{q}")
    axis.set(
        xscale="log", xlabel="concurrent requests", ylabel="latency (ms)", title="TorchServe latency vs concurrency"
    )
    axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output


def _rounds(load: Load) -> str:
    return ", ".join(f"{value:.1f}" for value in load.rounds)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def report(
    args: argparse.Namespace,
    package: PackageConfig,
    loads: list[Load],
    in_process: float,
    sweep: list[Load],
    head_to_head: list[Load],
    picture: Path,
    goals: list[str],
) -> str:
    peak = max(loads, key=lambda load: load.throughput)
    best = best_of(sweep)
    lines = [
        f"# Serving under load — {date.today().isoformat()}",
        "",
        f"Command: `python bench/serving.py {shlex.join(args.argv)}`",
        "",
        f"Model: {model_description(args.root, package)}. Machine: {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, no GPU; {args.conditions}. Absolute figures move with the machine's other "
        f"load; the ratio and the ranking of the sweep are what to read. {args.note}".rstrip(),
        "",
        f"## Latency and throughput (batch_size {package.batch_size}, max_batch_delay_ms "
        f"{package.max_batch_delay_ms}, workers {package.workers}: params.yaml), {args.requests} requests a round, "
        f"best of {args.rounds} rounds",
        "",
        _row(["concurrency", "requests", "errors", "images/s", "p50 ms", "p95 ms", "p99 ms", "images/s by round"]),
        _row(["---:"] * 8),
        *(
            _row(
                [
                    load.concurrency,
                    load.requests,
                    load.errors,
                    f"{load.throughput:.1f}",
                    *(f"{load.percentile(q):.0f}" for q in PERCENTILES),
                    _rounds(load),
                ]
            )
            for load in loads
        ),
        "",
        f"![latency vs concurrency]({picture.name})",
        "",
        f"In process (`mlic.serving.predictor`, batches of {package.batch_size}, decode included): "
        f"{in_process:.1f} images/s. Served at its best ({peak.concurrency} concurrent): "
        f"{peak.throughput:.1f} images/s = **{peak.throughput / in_process:.2f} × in-process**.",
        "",
        "Targets (params.yaml's setting, the figures above):",
        "",
        *goals,
        "",
        f"## Sweep at concurrency {args.sweep_concurrency}, {args.sweep_requests} requests a round",
        "",
        _row(
            [
                "batch_size",
                "max_batch_delay_ms",
                "workers",
                "images/s",
                "p50 ms",
                "p95 ms",
                "errors",
                "images/s by round",
            ]
        ),
        _row(["---:"] * 8),
        *(
            _row(
                [
                    load.batch_size,
                    load.max_batch_delay_ms,
                    load.workers,
                    f"{load.throughput:.1f}",
                    f"{load.percentile(50):.0f}",
                    f"{load.percentile(95):.0f}",
                    load.errors,
                    _rounds(load),
                ]
            )
            for load in sweep
        ),
        "",
        f"Best here: batch_size {best.batch_size}, max_batch_delay_ms {best.max_batch_delay_ms}, workers "
        f"{best.workers} ({best.throughput:.1f} images/s, p95 {best.percentile(95):.0f} ms; most images/s, "
        "the lower p95 among those within 5 %).",
        "",
        verdict(package, head_to_head),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="project root after `mlic package`")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="params override key=value")
    parser.add_argument("--requests", type=int, default=32, help="requests counted per concurrency and round")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement; the best one counts")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sweep-batch-size", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--sweep-delay", type=int, nargs="+", default=[10, 50], help="max_batch_delay_ms values")
    parser.add_argument("--sweep-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sweep-concurrency", type=int, default=16)
    parser.add_argument("--sweep-requests", type=int, default=32)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "serving.md")
    parser.add_argument("--note", default="", help="a sentence for the report (where the model came from)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.conditions = conditions()
    return args


def conditions() -> str:
    """What else ran: this process's niceness and the load average when the bench started."""
    load = os.getloadavg()[0]
    return f"run at nice {os.nice(0)} with a load average of {load:.1f} on {os.cpu_count()} cores when it started"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    package = load_config(args.params, args.overrides).package
    archive = archive_path(Paths(args.root).model_store, package.model_name)
    if not archive.is_file():
        raise ServingError("no packaged model", file=archive, fix="run `mlic package` (or `dvc repro`) in --root first")
    read_properties(Paths(args.root).serving_config)  # the project was packaged, not just half-copied
    print(f"load on {settings_of(package)} (batch_size, max_batch_delay_ms, workers)", flush=True)
    loads, stable = measure(args.root, [package], args.concurrency, args.requests, args.rounds)
    in_process = in_process_throughput(args.root, package, args.requests, args.rounds)
    print(f"  in process: {in_process:.1f} images/s", flush=True)
    sweep = []
    for batch_size in args.sweep_batch_size:
        for delay in args.sweep_delay:
            for workers in args.sweep_workers:
                setting = package.model_copy(
                    update={"batch_size": batch_size, "max_batch_delay_ms": delay, "workers": workers}
                )
                sweep += measure(args.root, [setting], [args.sweep_concurrency], args.sweep_requests, args.rounds)[0]
    best = best_of(sweep)
    head_to_head = []
    if settings_of(best) != settings_of(package):  # the sweep ran one server at a time: check side by side
        challenger = package.model_copy(
            update={
                "batch_size": best.batch_size,
                "max_batch_delay_ms": best.max_batch_delay_ms,
                "workers": best.workers,
            }
        )
        print("head to head:", flush=True)
        head_to_head, _ = measure(
            args.root, [package, challenger], [args.sweep_concurrency], args.sweep_requests, args.rounds
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    picture = plot(loads, args.output.with_suffix(".png"))
    goals = targets(loads, in_process, stable)
    text = report(args, package, loads, in_process, sweep, head_to_head, picture, goals)
    args.output.write_text(text, encoding="utf-8")
    numbers = {
        "date": date.today().isoformat(),
        "command": f"python bench/serving.py {shlex.join(args.argv)}",
        "cpu_count": os.cpu_count(),
        "conditions": args.conditions,
        "model": model_description(args.root, package),
        "loads": [load.summary() for load in loads],
        "in_process_images_per_s": round(in_process, 2),
        "served_over_in_process": round(max(load.throughput for load in loads) / in_process, 3),
        "sweep": [load.summary() for load in sweep],
        "best": best.summary(),
        "head_to_head": [load.summary() for load in head_to_head],
        "verdict": verdict(package, head_to_head),
        "answer_stable_under_load": stable,
        "targets": goals,
    }
    args.output.with_suffix(".json").write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")
    print(args.output.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
