"""`kill -9` of `mlic train`, once in the middle of a checkpoint write and once at a random moment:
the next run completes, no temporary is left, and the model and its metrics are those of a run
nobody interrupted."""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from interrupted import MlicProcess, temporaries
from training_project import ARCH, curve, history, ready_project, same_weights, weights

from mlic.paths import Paths

#: Enough epochs that a kill lands before the end; two steps each keep them short.
EPOCHS = 4


def train(root: Path) -> MlicProcess:
    return MlicProcess(root, "train", "--arch", ARCH, log="train.log")


@pytest.mark.slow
@pytest.mark.fault(
    "kill -9 of `mlic train` inside a checkpoint write, then at a random moment of the last epoch",
    "each rerun resumes from the last checkpoint and removes the killed write's temporary (logged)",
    "the final weights, per-epoch history and curves equal an uninterrupted run's; no temporary",
)
def test_training_killed_twice_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    params, paths = ready_project(tmp_path / "killed")
    params["train"]["epochs"] = EPOCHS
    (paths.root / "params.yaml").write_text(yaml.safe_dump(params))
    reference = Paths(tmp_path / "uninterrupted")
    shutil.copytree(paths.root, reference.root)
    checkpoint = paths.checkpoint_file(ARCH)
    writing = lambda: any(checkpoint.parent.glob(f".{checkpoint.name}.mlic-tmp-*"))  # noqa: E731 - a one-line predicate for wait_until

    uninterrupted = train(reference.root)

    # 1. Killed while writing the second checkpoint: the first stays, the half-written one is left behind.
    run = train(paths.root)
    run.wait_until(checkpoint.is_file, "first checkpoint")
    run.wait_until(writing, "second checkpoint write")
    run.kill()
    assert temporaries(paths.root), "the kill was meant to land inside the checkpoint write"

    # 2. Killed at a random moment of the resumed run's last epoch (the 4th). It starts when the
    #    3rd is logged (its checkpoint is written in the background meanwhile); the 3rd's logged
    #    duration tells how long an epoch takes on this machine, though under load one epoch took
    #    a quarter of the one before: the kill lands in the first 30 % of it.
    ended_third = lambda: re.findall(r"epoch 3: loss .*\((\d+\.\d) s\)", (paths.root / "train.log").read_text())  # noqa: E731 - a one-line predicate for wait_until
    before = len(ended_third())
    run = train(paths.root)
    run.wait_until(lambda: not temporaries(paths.root), "removal of the killed write's temporary")
    run.wait_until(lambda: len(ended_third()) > before, "the end of epoch 3")
    time.sleep(random.uniform(0.0, 0.3) * float(ended_third()[-1]))
    run.kill()

    # 3. Left alone: completes, cleans up, and matches the run nobody interrupted.
    run = train(paths.root)
    run.finish()
    uninterrupted.finish()
    assert temporaries(paths.root) == []
    assert "left by an interrupted write" in (paths.root / "train.log").read_text()
    assert same_weights(weights(paths), weights(reference))
    assert history(paths) == history(reference) and len(history(paths)) == EPOCHS
    for metric in ("train/loss", "val/mAP"):  # the dvclive curves too, one point per epoch
        assert curve(paths, metric) == curve(reference, metric)
