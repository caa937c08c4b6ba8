"""`bench/speed.py` on a tiny setting: every model timed beside the baseline, eager and exported,
with its peak training RSS measured in its own process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bench_scripts import ROOT, load_bench

NUMBER = r"\d+(?:\.\d+)?"


def numbers(row: str) -> list[str]:
    """The seven figures of a table row, after the arch name."""
    return [cell.strip() for cell in row.split("|")[2:9]]


@pytest.mark.slow
def test_speed_bench_prints_ratios_to_the_baseline_and_exported_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_bench("speed").main(
        [
            "--params",
            str(ROOT / "params.yaml"),
            "--archs",
            "msrn",
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--graph",
            str(tmp_path / "absent.json"),
        ]
    )

    printed = capsys.readouterr().out
    assert "graph: synthetic, 21 labels" in printed  # no graph file: the synthetic one, said so
    header = "| arch | params (M) | inference img/s | inference × baseline | exported × eager | train step (ms) "
    assert header in printed
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines() if re.match(r"\| (baseline|msrn) ", line)}
    assert list(rows) == ["baseline", "msrn"]  # the reference first
    msrn, baseline = (numbers(rows[arch]) for arch in ("msrn", "baseline"))
    assert all(re.fullmatch(NUMBER, cell) for cell in msrn), rows["msrn"]
    # The baseline is its own reference; its RSS came back from the probe's subprocess.
    assert baseline[2] == "1.00" and baseline[5] == "1.00" and re.fullmatch(NUMBER, baseline[6])
