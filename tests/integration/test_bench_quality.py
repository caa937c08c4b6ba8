"""`bench/quality.py` end to end on a tiny benchmark: every (row, data seed, train seed) triple
trained from scratch, one table with the spread, the differences to the references with their
confidence intervals, the label-attention checks and the verdict on the targets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from bench_scripts import ROOT, load_bench

CI = r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]"


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


@pytest.mark.slow
def test_quality_bench_compares_every_row_with_the_references_and_the_controls(tmp_path: Path) -> None:
    report = tmp_path / "quality.md"
    tiny = ["data.synthetic.num_images=160", "train.image_size=32", "train.batch_size=16"]
    arguments = [
        "--params",
        str(ROOT / "params.yaml"),
        "--archs",
        "cmasge",
        "cmasge[queries=learned]",
        "baseline",
        "msshared",
        "--seeds",
        "0",
        "1",
        "--data-seeds",
        "0",
        "1",
        "--epochs",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--output",
        str(report),
        *(arg for override in tiny for arg in ("--set", override)),
    ]
    bench = load_bench("quality")
    bench.main(arguments)

    text = report.read_text(encoding="utf-8")
    assert "python bench/quality.py --params" in text  # the exact command, to rerun it
    header = next(line for line in text.splitlines() if line.startswith("| row | test mAP"))
    columns = cells(header)
    assert columns[:7] == [
        "row",
        "test mAP",
        "val mAP",
        "Δ vs baseline [95% CI]",
        "Δ vs msshared [95% CI]",
        "Δ vs base [95% CI]",
        "look-alike AP",
    ]
    rows = {
        cells(line)[0]: dict(zip(columns, cells(line), strict=True)) for line in text.split(header)[1].splitlines()[2:6]
    }
    assert list(rows) == ["baseline", "msshared", "cmasge", "cmasge[queries=learned]"]  # references first
    for name, row in rows.items():
        assert row["runs (data seeds)"] == "4 (0, 1)"
        assert re.fullmatch(r"\d+\.\d ± \d+\.\d", row["test mAP"]) and re.fullmatch(
            r"\d+\.\d ± \d+\.\d", row["val mAP"]
        )
        for reference in ("baseline", "msshared"):
            expected = "–" if name == reference else CI  # four runs each: a Welch interval
            assert re.fullmatch(expected, row[f"Δ vs {reference} [95% CI]"]), (name, row)
    assert re.fullmatch(CI, rows["cmasge[queries=learned]"]["Δ vs base [95% CI]"])
    assert rows["cmasge"]["Δ vs base [95% CI]"] == "–"
    # Label attention: a dash where there is none; query collapse, sharpness and the pointing game
    # (labels' own maps, per scale, against the shared saliency) where there is.
    assert [rows["baseline"][key] for key in ("label-query cos", "attention entropy")] == ["–", "–"]
    assert rows["baseline"]["pointing game: labels / shared"] == "–"
    assert rows["msshared"]["label-query cos"] == "–"  # one query: no pair to compare
    assert re.fullmatch(r"-?[01]\.\d\d", rows["cmasge"]["label-query cos"])
    assert re.fullmatch(r"\d+\.\d \(\d+/\d+\) / \d+\.\d", rows["cmasge"]["pointing game: labels / shared"])
    assert rows["baseline"]["mAP owed to distinct queries"] == "–"
    assert rows["msshared"]["mAP owed to distinct queries"] == "+0.0 ± 0.0"  # its one query is its mean
    assert re.fullmatch(r"[+-]\d+\.\d ± \d+\.\d", rows["cmasge"]["mAP owed to distinct queries"])
    assert "| row | Δ look-alike AP vs msshared [95% CI] | Δ other AP vs msshared [95% CI] |" in text
    assert re.search(r"- cmasge: label-query cos .* pointing game .* mAP vs msshared .* look-alikes", text)
    runs = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))["runs"]
    assert len(runs) == 4 * 2 * 2
    assert {(run["data_seed"], run["seed"]) for run in runs} == {(0, 0), (0, 1), (1, 0), (1, 1)}

    # An interrupted run is finished with --resume (nothing left to train here) and re-reported
    # with --report-only: the same tables from the same runs.
    tables = text.split("Settings:")[1]
    bench.main([*arguments, "--resume"])
    bench.main([*arguments, "--report-only"])
    assert report.read_text(encoding="utf-8").split("Settings:")[1] == tables
    assert len(json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))["runs"]) == len(runs)

    # A report of one data seed reads only that seed's runs, and the .json still keeps them all.
    one_seed = [*arguments[: arguments.index("--data-seeds") + 1], "0", *arguments[arguments.index("--epochs") :]]
    bench.main([*one_seed, "--report-only"])
    text = report.read_text(encoding="utf-8")
    assert "synthetic data (160 images, data seeds 0)" in text
    header = next(line for line in text.splitlines() if line.startswith("| row | test mAP"))
    baseline = next(cells(line) for line in text.split(header)[1].splitlines() if line.startswith("| baseline |"))
    seed_0 = [run["mAP"] for run in runs if run["row"] == "baseline" and run["data_seed"] == 0]
    assert baseline[1].startswith(f"{np.mean(seed_0):.1f} ± ")
    assert len(json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))["runs"]) == len(runs)

    # The saved models left in the workdir are the last run of each architecture: the saved-model
    # probe reads the same figures the bench recorded for that run, and names its knobs.
    probe = tmp_path / "distinct-queries.md"
    saved_arguments = ["--params", str(ROOT / "params.yaml"), "--output", str(probe), "--archs", "cmasge", "baseline"]
    load_bench("distinct_queries").main(["--workdir", str(tmp_path / "work" / "data-seed-1"), *saved_arguments])
    last = next(run for run in runs if (run["row"], run["data_seed"], run["seed"]) == ("cmasge[queries=learned]", 1, 1))
    probed = {cells(line)[0]: cells(line) for line in probe.read_text(encoding="utf-8").splitlines()[-2:]}
    assert probed["cmasge"][1] == "queries=learned"
    assert float(probed["cmasge"][2]) == pytest.approx(last["mAP"], abs=0.051)
    assert float(probed["cmasge"][5]) == pytest.approx(last["distinct_query_mAP"], abs=0.051)
    assert float(probed["cmasge"][4]) <= 100.0 and probed["baseline"][2] == "no label-guided attention"


def test_a_variant_is_compared_with_itself_without_its_last_knob() -> None:
    row = load_bench("quality").Row.parse
    present = {"msrn", "msrn[word_norm=1]", "sgfn"}
    assert row("msrn[word_norm=1,label_graph=none]").base(present) == "msrn[word_norm=1]"
    assert row("msrn[label_graph=none]").base(present) == "msrn"
    assert row("msrn[pool=max,projection=plain]").base(present) == "msrn"  # msrn[pool=max] did not run
    assert row("msrn").base(present) is None
    assert row("cmasge[queries=learned]").base(present) is None  # nothing to compare with
