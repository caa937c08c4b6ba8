"""Two `dvc repro` in one project: DVC's locks refuse the second with a clear message (which output
is busy, held by which process) while the first runs on; the first, killed with SIGKILL in its
prepare stage, leaves a project the next `dvc repro` completes, with no temporary left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dvc_project import BIN, TINY, make_project, run
from interrupted import temporaries

pytestmark = pytest.mark.slow


def refused_repro(root: Path, first: subprocess.Popen) -> str:
    """What a second `dvc repro` prints while `first` runs: every try is refused. DVC holds its
    project lock until the stage's command starts, and a try in that window gets only "Unable to
    acquire lock"; once the command runs, the lock on its outputs names the output and the holder
    (the refusal this test reads), so the windowed kind is tried again."""
    for _ in range(40):
        second = run(["dvc", "repro"], root, check=False)
        refusal = second.stdout + second.stderr
        assert second.returncode != 0, refusal
        if "Unable to acquire lock" not in refusal or first.poll() is not None:
            return refusal
        time.sleep(0.25)
    return refusal


@pytest.mark.fault(
    "a second `dvc repro` beside a running one, then kill -9 of the first",
    "the second is refused, naming the busy output and the process holding it; the next repro completes",
    "a finished pipeline (the packaged .mar), `dvc status` clean, no temporary",
)
def test_a_second_repro_is_refused_and_a_killed_one_is_completed_by_the_next(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project", TINY)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        ["dvc", "repro"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill below reaches the stage's command too
    )
    assert first.stdout is not None
    seen = []
    for line in first.stdout:
        seen.append(line)
        if "Running stage 'prepare'" in line:
            break
    assert first.poll() is None, "".join(seen)

    refusal = refused_repro(root, first)
    assert re.search(r"'[^']+' is busy, it is being blocked by", refusal), refusal  # an output the first writes
    assert f"(PID {first.pid}): {BIN / 'dvc'} repro" in refusal, refusal  # and who holds it

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    first.stdout.close()

    run(["dvc", "repro"], root)
    assert run(["dvc", "status"], root).stdout.strip().startswith("Data and pipelines are up to date")
    assert (root / "artifacts" / "serving" / "model-store" / "mlic.mar").is_file()
    assert temporaries(root) == []
