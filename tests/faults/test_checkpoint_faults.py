"""A full disk while a checkpoint or a model is written, a torn or corrupt checkpoint on disk:
nothing learnt before is lost, and the next run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from interrupted import temporaries
from torch import nn
from training_project import ARCH, TRAIN, Finished, curve, same_weights, weights

from mlic.config import Config
from mlic.errors import StorageError
from mlic.models import saved
from mlic.paths import Paths
from mlic.steps import train as train_step
from mlic.training import checkpoints, loop


class FullDisk(io.FileIO):
    """A file on a volume with `room` bytes left: a write past it fails as on a full disk."""

    def __init__(self, path: str | Path, room: int) -> None:
        super().__init__(path, "w")
        self.room = room

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        self.room -= size
        return super().write(data)


def disk_fills_at_save(number: int) -> Callable[..., Any]:
    """An `open` for the checkpoint (or model) writer: saves before the `number`-th go through, from it on
    the volume has 64 KiB left (the checkpoint is several MB)."""
    calls = 0

    def opener(path: str | Path, mode: str = "r") -> Any:
        nonlocal calls
        if "w" not in mode:  # reading the inputs' digests
            return open(path, mode)
        calls += 1
        if calls < number:
            return open(path, mode)
        return io.BufferedWriter(FullDisk(path, room=64 * 1024))

    return opener


@pytest.mark.fault(
    "disk full while a checkpoint is written (epoch 2 of 3)",
    "StorageError naming the checkpoint and saying disk full; nothing half-written left; the rerun resumes",
    "the epoch-1 checkpoint; the final weights equal an uninterrupted run's",
)
def test_a_full_disk_keeps_the_previous_checkpoint_and_the_rerun_ends_as_if_nothing_happened(
    project: tuple[Config, Paths], uninterrupted: Finished, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, paths = project
    checkpoint = paths.checkpoint_file(ARCH)
    monkeypatch.setattr(checkpoints, "open", disk_fills_at_save(2), raising=False)
    with pytest.raises(StorageError) as caught:
        train_step.run(config, paths, ARCH)
    assert caught.value.file == str(checkpoint)
    assert "disk full" in caught.value.render() and "previous version is unchanged" in caught.value.render()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1  # epoch 2's save failed, epoch 1's stands
    assert temporaries(paths.root) == [] and not paths.model_dir(ARCH).exists()

    monkeypatch.undo()  # space freed
    result = train_step.run(config, paths, ARCH)
    assert result.resumed_at_epoch == 1 and result.epochs == TRAIN["epochs"]
    assert same_weights(weights(paths), uninterrupted.weights)
    assert temporaries(paths.root) == []


@pytest.mark.fault(
    "disk full while a saved model is overwritten",
    "StorageError naming weights.pt and saying disk full; nothing half-written left",
    "the previous model's weights.pt and config.json, byte for byte",
)
def test_a_full_disk_keeps_the_previously_saved_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = saved.save_model(tmp_path, nn.Linear(256, 256), {"arch": "old"})  # 256 KB of weights
    files = {name: (before / name).read_bytes() for name in (saved.WEIGHTS_FILE, saved.CONFIG_FILE)}
    monkeypatch.setattr(saved, "open", disk_fills_at_save(1), raising=False)
    with pytest.raises(StorageError) as caught:
        saved.save_model(tmp_path, nn.Linear(256, 256), {"arch": "new"})
    assert caught.value.file == str(tmp_path / saved.WEIGHTS_FILE)
    assert "disk full" in caught.value.render() and "previous version is unchanged" in caught.value.render()
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    assert temporaries(tmp_path) == []


#: Ways a checkpoint on disk can be damaged, from the sound one of an uninterrupted run.
CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda sound: sound[: len(sound) // 2],
    "garbage": lambda sound: os.urandom(4096),
    "empty": lambda sound: b"",
    "flipped bytes": lambda sound: sound[:-4096] + bytes(b ^ 0xFF for b in sound[-4096:]),
}


@pytest.mark.fault(
    "last.pt damaged: {corruption}",
    "a warning naming the file; training starts fresh",
    "the final weights equal an uninterrupted run's; last.pt replaced by a sound one",
)
@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_ignored_with_a_warning_and_training_starts_fresh(
    project: tuple[Config, Paths], uninterrupted: Finished, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The next run cannot trust a damaged checkpoint: it says so and trains from the start to the same end."""
    config, paths = project
    checkpoint = paths.checkpoint_file(ARCH)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(CORRUPTIONS[corruption](uninterrupted.checkpoint))

    with caplog.at_level(logging.WARNING, logger="mlic.training.checkpoints"):
        result = train_step.run(config, paths, ARCH)
    assert any(str(checkpoint) in r.getMessage() and "starting fresh" in r.getMessage() for r in caplog.records)
    assert result.resumed_at_epoch == 0 and result.epochs == TRAIN["epochs"]
    assert same_weights(weights(paths), uninterrupted.weights)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == TRAIN["epochs"]  # replaced by a sound one


def test_a_file_that_is_no_checkpoint_is_ignored_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = tmp_path / "last.pt"
    torch.save(torch.zeros(3), checkpoint)
    with caplog.at_level(logging.WARNING, logger="mlic.training.checkpoints"):
        assert checkpoints.load_checkpoint(checkpoint, "any") is None
    assert "not a training checkpoint" in caplog.text


@pytest.mark.fault(
    "killed between the checkpoint and the training curves; metrics.json torn",
    "the resume ignores dvclive's files and rebuilds the curves from the checkpoint",
    "one point per epoch in every curve, equal to an uninterrupted run's",
)
def test_torn_training_curves_do_not_stop_the_resume_and_are_rebuilt_from_the_checkpoint(
    project: tuple[Config, Paths], uninterrupted: Finished, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dvclive writes its files in place: killed inside those writes, they are torn, or an epoch
    short of the checkpoint. The curves come from the checkpoint's history instead."""
    config, paths = project
    monkeypatch.setattr(loop, "log_epoch", _interrupt)  # killed between the checkpoint and the curves
    with pytest.raises(KeyboardInterrupt):
        train_step.run(config, paths, ARCH)
    monkeypatch.undo()
    summary = paths.train_logs(ARCH) / "metrics.json"
    summary.write_text('{"step": 0, "train": {"lo')  # torn

    result = train_step.run(config, paths, ARCH)
    assert result.resumed_at_epoch == 1
    steps, losses = zip(*curve(paths, "train/loss"), strict=True)
    assert steps == tuple(range(TRAIN["epochs"]))
    assert losses == pytest.approx([epoch["train_loss"] for epoch in uninterrupted.history])
    assert json.loads(summary.read_text())["step"] == TRAIN["epochs"] - 1


def _interrupt(live: object, epoch: dict[str, float]) -> None:
    raise KeyboardInterrupt
