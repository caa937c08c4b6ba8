"""`mlic demo`'s timing of the DVC stages, on dvc repro's own wording."""

from __future__ import annotations

import itertools

from mlic.demo import Timing, stage_timings, timing_summary

REPRO_OUTPUT = """\
Stage 'prepare' didn't change, skipping
Running stage 'graph':
> mlic graph
graph: 21 labels
Running stage 'train@baseline':
> mlic train --arch baseline
baseline epoch 1/8: 100%
Running stage 'evaluate':
> mlic evaluate
Updating lock file 'dvc.lock'
"""


def test_each_stage_runs_from_its_line_to_the_next_and_skipped_ones_are_marked() -> None:
    ticks = itertools.count(step=10.0)  # every clock reading is 10 s after the one before
    timings = stage_timings(REPRO_OUTPUT.splitlines(keepends=True), clock=lambda: next(ticks))
    assert timings == [
        Timing("prepare", 0.0, ran=False),
        Timing("graph", 10.0),
        Timing("train@baseline", 10.0),
        Timing("evaluate", 10.0),
    ]


def test_the_summary_totals_what_ran() -> None:
    summary = timing_summary([Timing("prepare", 0.0, ran=False), Timing("train@msrn", 90.0), Timing("serve", 30.5)])
    assert "up to date" in summary.splitlines()[2]
    assert summary.splitlines()[-1].split() == ["total", "120.5", "s", "(2", "min", "0", "s)"]
