"""Resumable training state, written atomically each epoch.

A checkpoint carries a fingerprint of everything that shapes the run (data, graph, knobs); a
checkpoint whose fingerprint differs is ignored, so changed params never resume stale state.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from mlic.io import atomic_path

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
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state if it belongs to this exact run, else None (and say why)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file must not stop training: start fresh
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint %s is from other data/params: starting fresh", path)
        return None
    return state
