"""Resumable training state, written atomically each epoch.

A checkpoint carries a fingerprint of everything that shapes the run (data, graph, knobs); a
checkpoint whose fingerprint differs is ignored, so changed params never resume stale state. An
unreadable one (truncated, corrupt, not ours) is ignored too, with a warning: training then starts
fresh rather than stopping on a file it would overwrite anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import torch

from mlic.io import atomic_path, remove_stale_temporaries

log = logging.getLogger(__name__)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_fingerprint(settings: dict[str, Any], inputs: list[Path]) -> str:
    payload = json.dumps(settings, sort_keys=True, default=str) + "".join(file_digest(p) for p in inputs)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically; a full disk is a StorageError and the previous checkpoint stays.

    torch.save writes through our file handle so a failed write surfaces as the OSError it is
    (given a path, torch reports it as an opaque RuntimeError from its zip writer).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


class CheckpointWriter:
    """Writes each epoch's checkpoint on a background thread, so the next epoch trains while the
    disk syncs: MSRN's 1.1 GB checkpoint took 3 s an epoch on 2 CPU cores, 0.5 s of it writing
    and the rest waiting on fsync. The state is copied to the CPU first, since training goes on
    changing the tensors it refers to. One write at a time: `save` waits for the previous one, and
    its error (a full disk) is raised there or by `wait`, which the run calls before it ends.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: Path, state: dict[str, Any]) -> None:
        self.wait()
        snapshot = _copied_to_cpu(state)
        self._thread = threading.Thread(target=self._write, args=(path, snapshot), name=f"checkpoint {path.name}")
        self._thread.start()

    def wait(self) -> None:
        """Block until the last write is on disk; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Let the last write finish while another error ends the run; log its own failure,
        which must not replace the error that is on its way to the user."""
        try:
            self.wait()
        except Exception as exc:
            log.error("the last checkpoint was not written: %s", exc)

    def _write(self, path: Path, state: dict[str, Any]) -> None:
        try:
            save_checkpoint(path, state)
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc


def _copied_to_cpu(value: Any) -> Any:
    """`value` with every tensor in it copied to the CPU (dicts, lists and tuples walked)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _copied_to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied_to_cpu(item) for item in value)
    return value


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state if it belongs to this exact run, else None (and say why).

    Called when training starts: temporaries of checkpoint writes a kill interrupted go first.
    """
    remove_stale_temporaries(path.parent)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file must not stop training: start fresh
        log.warning("ignoring unreadable checkpoint %s (%s): starting fresh", path, exc)
        return None
    if not isinstance(state, dict) or "epoch" not in state:
        log.warning("ignoring %s: not a training checkpoint: starting fresh", path)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint %s is from other data/params: starting fresh", path)
        return None
    return state
