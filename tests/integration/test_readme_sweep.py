"""The README's sweep, run as written.

A git + DVC copy of the project whose params.yaml is tiny (tests/dvc_project.py: baseline and
ML-GCN) is reproduced and committed, as the data-version walkthrough leaves it; then the fenced
block under the README's sweep marker is executed by bash, unchanged: it queues one experiment per
value of an ML-GCN knob, runs the queue and prints `dvc exp show`'s table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dvc_project import TINY, commit, make_project, ran_stages, readme_block, run, run_script

pytestmark = pytest.mark.slow

MARKER = "<!-- walkthrough: sweeps"
KNOB = "models.mlgcn.hidden_dim"
#: What exp show keeps: the swept knob and each model's test figures.
COLUMNS = {"Experiment", KNOB} | {
    f"{arch}.{figure}" for arch in TINY["architectures"] for figure in ("mAP", "CF1", "OF1")
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The project after the sweep, and everything the block printed, commands traced (`+ ...`)."""
    root = make_project(tmp_path_factory.mktemp("sweep"), TINY)
    run(["dvc", "repro"], root)
    commit(root, "baseline")
    return root, run_script(root, readme_block(MARKER))


def queued(output: str) -> list[str]:
    return re.findall(r"^Queued experiment '([^']+)'", output, flags=re.MULTILINE)


def table(output: str) -> list[dict[str, str]]:
    """exp show's markdown table, a dict per row (workspace, the commit, then each experiment)."""
    lines = [line for line in output.split("+ dvc exp show", 1)[1].splitlines() if line.startswith("|")]
    header, _, *rows = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_each_queued_experiment_ran_and_retrained_only_the_swept_model(swept: tuple[Path, str]) -> None:
    root, output = swept
    names = queued(output)
    assert len(names) == 2  # one per value of the sweep
    status = run(["dvc", "queue", "status"], root).stdout
    for name in names:
        assert re.search(rf"\b{name}\s+.*\bSuccess\b", status), status
    # the baseline's knobs did not change: its model comes from the cache, not from a second training
    ran = ran_stages(output.split("+ dvc exp run --run-all", 1)[1])
    assert sorted(ran) == sorted(["train@mlgcn", "evaluate", "package"] * 2)


def test_exp_show_has_a_row_per_experiment_with_its_knob_and_map(swept: tuple[Path, str]) -> None:
    _, output = swept
    rows = table(output)
    assert set(rows[0]) == COLUMNS
    experiments = {name: row for name in queued(output) for row in rows if f"[{name}]" in row["Experiment"]}
    assert len(experiments) == 2 and len(rows) == 4  # workspace, the commit, the two experiments
    assert sorted(int(row[KNOB]) for row in experiments.values()) == [256, 512]
    assert {row[KNOB] for row in rows[:2]} == {"64"}  # the committed value, unchanged in the workspace
    maps = [float(row["mlgcn.mAP"]) for row in experiments.values()]
    assert maps[0] != maps[1], "both experiments scored the same: the knob did not reach the model"
    assert {row["baseline.mAP"] for row in rows} == {rows[0]["baseline.mAP"]}  # the same cached baseline
