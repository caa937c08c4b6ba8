"""Checkpoints written in the background: what lands is the state at `save`, and a failed write
reaches the training thread."""

from __future__ import annotations

import errno
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from mlic.errors import StorageError
from mlic.training import checkpoints
from mlic.training.checkpoints import CheckpointWriter


def test_the_saved_state_is_the_one_at_save_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    write = checkpoints.save_checkpoint

    def slow_save(path: Path, state: dict[str, Any]) -> None:
        release.wait(10)  # the write starts only after training has changed the tensors
        write(path, state)

    monkeypatch.setattr(checkpoints, "save_checkpoint", slow_save)
    weights = torch.zeros(3)
    writer = CheckpointWriter()
    writer.save(tmp_path / "last.pt", {"epoch": 1, "model": {"w": weights}, "history": [{"loss": 1.0}]})
    weights += 5  # the next epoch's update, in place
    release.set()
    writer.wait()
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(saved["model"]["w"], torch.zeros(3)) and saved["history"] == [{"loss": 1.0}]


def test_a_failed_write_is_raised_by_the_next_save_and_by_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(path: Path, state: dict[str, Any]) -> None:
        raise StorageError("disk full", file=str(path))

    monkeypatch.setattr(checkpoints, "save_checkpoint", full_disk)
    writer = CheckpointWriter()
    writer.save(tmp_path / "last.pt", {"epoch": 1})
    with pytest.raises(StorageError, match="disk full"):
        writer.save(tmp_path / "last.pt", {"epoch": 2})
    writer.save(tmp_path / "last.pt", {"epoch": 3})
    with pytest.raises(StorageError):
        writer.wait()
    writer.wait()  # raised once


def test_close_logs_a_failed_write_instead_of_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While another error ends the run, the checkpoint's own failure must not replace it."""
    monkeypatch.setattr(
        checkpoints, "save_checkpoint", lambda path, state: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error"))
    )
    writer = CheckpointWriter()
    writer.save(tmp_path / "last.pt", {"epoch": 1})
    with caplog.at_level(logging.ERROR, logger="mlic.training.checkpoints"):
        writer.close()
    assert any("the last checkpoint was not written" in record.getMessage() for record in caplog.records)
