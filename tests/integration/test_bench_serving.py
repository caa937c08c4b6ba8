"""`bench/serving.py` end to end with a minimal load: real TorchServe servers (the configured one
and a one-point sweep), the in-process comparison, and the report's columns, numbers and picture."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bench_scripts import ROOT, load_bench


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


@pytest.mark.slow
def test_serving_bench_reports_latency_throughput_and_the_best_setting(packaged_root: Path, tmp_path: Path) -> None:
    report = tmp_path / "serving.md"
    arguments = [
        "--root", str(packaged_root), "--params", str(ROOT / "params.yaml"), "--requests", "4", "--rounds", "2",
        "--concurrency", "1", "3",
        "--sweep-batch-size", "2", "--sweep-delay", "5", "--sweep-workers", "1", "--sweep-concurrency", "2",
        "--sweep-requests", "3", "--output", str(report),
        "--set", "package.batch_size=2", "--set", "package.max_batch_delay_ms=5",
    ]  # fmt: skip
    load_bench("serving").main(arguments)

    text = report.read_text(encoding="utf-8")
    assert "python bench/serving.py --root" in text and "load average" in text
    header = next(line for line in text.splitlines() if line.startswith("| concurrency"))
    by_round = "images/s by round"
    assert cells(header) == ["concurrency", "requests", "errors", "images/s", "p50 ms", "p95 ms", "p99 ms", by_round]
    rows = [cells(line) for line in text.split(header)[1].splitlines()[2:4]]
    assert [row[:3] for row in rows] == [["1", "4", "0"], ["3", "4", "0"]]
    for row in rows:  # the best of two rounds, both listed
        p50, p95, p99 = (float(value) for value in row[4:7])
        rounds = [float(value) for value in row[7].split(", ")]
        assert len(rounds) == 2 and float(row[3]) == max(rounds) > 0 and 0 < p50 <= p95 <= p99
    assert re.search(r"\d+\.\d images/s = \*\*\d+\.\d\d × in-process\*\*", text)
    sweep_header = next(line for line in text.splitlines() if line.startswith("| batch_size"))
    sweep_columns = ["batch_size", "max_batch_delay_ms", "workers", "images/s", "p50 ms", "p95 ms", "errors", by_round]
    assert cells(sweep_header) == sweep_columns
    assert cells(text.split(sweep_header)[1].splitlines()[2])[:3] == ["2", "5", "1"]
    assert "Best here: batch_size 2, max_batch_delay_ms 5, workers 1" in text
    assert "params.yaml's setting (2, 5, 1) is the sweep's best: keep it." in text  # no head to head needed
    assert re.search(r"- throughput at concurrency 3 ≥ 0.8 × in-process: [\d.]+ / [\d.]+ images/s = [\d.]+ ×", text)
    assert re.search(r"- p99 at concurrency 3 ≤ 4 × p50 at concurrency 1: \d+ ms against \d+ ms", text)
    assert "- no errors under load: 0 — met" in text
    assert "- the first image answered alike before and after the load: yes — met" in text

    numbers = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    assert [load["concurrency"] for load in numbers["loads"]] == [1, 3]
    assert all(len(load["rounds"]) == 2 for load in [*numbers["loads"], *numbers["sweep"]])
    assert numbers["in_process_images_per_s"] > 0 and numbers["served_over_in_process"] > 0
    assert numbers["best"]["batch_size"] == 2 and numbers["best"]["errors"] == 0 and numbers["head_to_head"] == []
    assert report.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    assert numbers["answer_stable_under_load"] is True and len(numbers["targets"]) == 4


def test_the_defaults_change_only_on_a_clear_side_by_side_gain() -> None:
    bench = load_bench("serving")
    configured = bench.PackageConfig()

    def load(batch_size: int, seconds: float) -> object:
        return bench.Load(batch_size, 10, 1, 16, 32, 0, seconds, [100.0, 200.0], [32 / seconds])

    assert "is the sweep's best: keep it" in bench.verdict(configured, [])
    slight = bench.verdict(configured, [load(8, 4.0), load(4, 3.8)])  # 8.0 vs 8.4 images/s
    assert "1.05 ×" in slight and slight.endswith("under 10% more: keep params.yaml's setting.")
    clear = bench.verdict(configured, [load(8, 4.0), load(4, 2.0)])
    assert "2.00 ×" in clear and clear.endswith("switch params.yaml `package:` to the sweep's best.")


def test_the_targets_say_which_are_met() -> None:
    bench = load_bench("serving")

    def load(concurrency: int, seconds: float, latencies: list[float], errors: int = 0) -> object:
        return bench.Load(8, 50, 1, concurrency, 32, errors, seconds, latencies, [])

    alone = load(1, 4.0, [100.0] * 10)  # p50 100 ms
    busy = load(16, 1.0, [300.0] * 10)  # 32 images/s, p99 300 ms
    met = bench.targets([alone, busy], in_process=36.0, stable=True)
    assert met[0].endswith("32.0 / 36.0 images/s = 0.89 × — met")
    assert met[1].endswith("300 ms against 400 ms — met")
    assert met[2:] == [
        "- no errors under load: 0 — met",
        "- the first image answered alike before and after the load: yes — met",
    ]
    slow = load(16, 2.0, [500.0] * 9 + [900.0], errors=1)
    missed = bench.targets([alone, slow], in_process=36.0, stable=False)
    assert all(line.endswith("— **not met**") for line in missed), missed
