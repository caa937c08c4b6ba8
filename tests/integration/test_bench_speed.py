"""`bench/speed.py` on a tiny setting: every model timed beside the baseline, eager and exported,
with its peak training RSS measured in its own process."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_scripts import ROOT, load_bench  # noqa: E402

NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.slow
def test_speed_bench_prints_ratios_to_the_baseline_and_exported_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_bench("speed").main(
        [
            "--params", str(ROOT / "params.yaml"), "--archs", "msrn", "--image-size", "32", "--batch-size", "2",
            "--rounds", "1", "--warmup", "0", "--threads", "1", "--graph", str(tmp_path / "absent.json"),
        ]
    )

    printed = capsys.readouterr().out
    assert "graph: synthetic, 21 labels" in printed  # no graph file: the synthetic one, said so
    header = "| arch | params (M) | inference img/s | inference × baseline | exported × eager | train step (ms) "
    assert header in printed
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines() if re.match(r"\| (baseline|msrn) ", line)}
    assert list(rows) == ["baseline", "msrn"]  # the reference first
    cells = [rows["msrn"].split("|")[i].strip() for i in range(2, 9)]
    assert all(re.fullmatch(NUMBER, cell) for cell in cells), rows["msrn"]
    # The baseline is its own reference; its RSS came back from the probe's subprocess.
    baseline = [cell.strip() for cell in rows["baseline"].split("|")[2:9]]
    assert baseline[2] == "1.00" and baseline[5] == "1.00" and re.fullmatch(NUMBER, baseline[6])
