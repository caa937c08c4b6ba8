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
