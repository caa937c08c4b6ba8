"""`bench/quality.py` end to end on a tiny benchmark: every (arch, seed) pair trained from scratch
and one table with the spread over seeds and the verdict on the issue's targets."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_scripts import ROOT, load_bench  # noqa: E402


@pytest.mark.slow
def test_quality_bench_trains_every_pair_and_writes_one_table(tmp_path: Path) -> None:
    report = tmp_path / "quality.md"
    tiny = [
        "data.synthetic.num_images=160", "train.image_size=32", "train.batch_size=16",
        "models.mlgcn.hidden_dim=32",
    ]
    load_bench("quality").main(
        [
            "--params", str(ROOT / "params.yaml"), "--archs", "mlgcn", "cmasge", "baseline", "--seeds", "0", "1",
            "--epochs", "1", "--workdir", str(tmp_path / "work"), "--output", str(report),
            *(arg for override in tiny for arg in ("--set", override)),
        ]
    )

    text = report.read_text(encoding="utf-8")
    assert "python bench/quality.py --params" in text  # the exact command, to rerun it
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if re.match(r"\| (baseline|mlgcn|cmasge) ", line)}
    assert list(rows) == ["baseline", "mlgcn", "cmasge"]  # the reference first
    for row in rows.values():
        assert re.search(r"\| \d+\.\d ± \d+\.\d \|", row)  # mean ± std over the two seeds
        assert re.search(r"\| \d+\.\d / \d+\.\d \|", row)  # one mAP per seed
    assert "| – |" in rows["baseline"] and re.search(r"\| [+-]\d+\.\d \|", rows["mlgcn"])
    assert "| look-alike AP |" in text and "plate/frisbee" in text  # the part of mAP that needs context
    # Label attention (query collapse, sharpness): measured where there is label-guided attention,
    # a dash where there is none.
    assert "| label-query cos | attention entropy |" in text
    assert re.search(r"\| -?[01]\.\d\d \| [01]\.\d\d \| [\d.]+ \| [\d.]+ \|$", rows["cmasge"])
    assert all(re.search(r"\| – \| – \| [\d.]+ \| [\d.]+ \|$", rows[arch]) for arch in ("baseline", "mlgcn"))
    assert "targets: every graph model ≥ baseline" in text
    runs = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))["runs"]
    assert sorted((run["arch"], run["seed"]) for run in runs) == [
        ("baseline", 0), ("baseline", 1), ("cmasge", 0), ("cmasge", 1), ("mlgcn", 0), ("mlgcn", 1)
    ]
