"""A local TorchServe's endpoint as `mlic serve` records it, and its key file: what the server
writes and the client reads, kept apart from both so neither imports the other for it.

`paths.serve_state/server.json` holds the `Endpoint` (URLs, pid, state folder); TorchServe's
`key_file.json` in that folder holds the inference and management tokens, which expire.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from mlic.errors import ServingError
from mlic.paths import Paths

logger = logging.getLogger(__name__)

STATE_FILE = "server.json"
KEY_FILE = "key_file.json"
#: What identifies TorchServe's Java process (the launcher checks the same).
FRONTEND_CLASS = "org.pytorch.serve.ModelServer"


@dataclass(frozen=True)
class Endpoint:
    """A running local TorchServe, as recorded in its state file."""

    model_name: str
    inference_url: str
    management_url: str
    metrics_url: str
    pid: int
    state_dir: Path
    ports: dict[str, int]

    @property
    def prediction_url(self) -> str:
        return f"{self.inference_url}/predictions/{self.model_name}"

    @property
    def key_file(self) -> Path:
        return self.state_dir / KEY_FILE

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def describe(self) -> str:
        return "\n".join(
            [
                f"TorchServe is serving model '{self.model_name}' (pid {self.pid})",
                f"  predict: POST {self.prediction_url}",
                "           body: the image bytes with Content-Type: application/octet-stream "
                "(header X-All-Scores: true for every label's score),",
                '           or JSON {"image": "<base64>", "all_scores": true}',
                f"  token:   Authorization: Bearer <inference.key from {self.key_file}> "
                "(expires after 60 min; `mlic predict` and mlic.serving.client renew it)",
                f"  metrics: {self.metrics_url}/metrics (Prometheus)",
                f"  logs:    {self.log_dir}",
                "  stop:    mlic serve --stop",
            ]
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "state_dir": str(self.state_dir)}

    @classmethod
    def from_json(cls, payload: dict[str, object]) -> Endpoint:
        return cls(**{**payload, "state_dir": Path(str(payload["state_dir"]))})


def state_file(paths: Paths) -> Path:
    return paths.serve_state / STATE_FILE


def is_torchserve(pid: int) -> bool:
    """True while `pid` is TorchServe's Java process (pids are reused; the command line tells)."""
    try:
        return FRONTEND_CLASS in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def recorded_endpoint(paths: Paths) -> Endpoint | None:
    """The endpoint recorded under this root, running or not; None when none (or unreadable) is."""
    recorded = state_file(paths)
    if not recorded.is_file():
        return None
    try:
        return Endpoint.from_json(json.loads(recorded.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, KeyError):
        logger.warning("ignoring unreadable server state %s", recorded)
        return None


def running_endpoint(paths: Paths) -> Endpoint:
    """The server `mlic serve` started under this root; ServingError when there is none."""
    endpoint = recorded_endpoint(paths)
    if endpoint is None or not is_torchserve(endpoint.pid):
        raise ServingError(
            "no TorchServe started by `mlic serve` is running",
            file=state_file(paths),
            fix="start it with `mlic serve` (or pass --url and export MLIC_TOKEN for another server)",
        )
    return endpoint


def read_key_file(key_file: Path) -> dict[str, Any]:
    """TorchServe's key_file.json: {"management"|"inference": {"key", "expiration time"}, "API": {"key"}}."""
    try:
        return json.loads(key_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServingError(
            "TorchServe key file not found", file=key_file, fix="start the server with `mlic serve`"
        ) from None
    except json.JSONDecodeError as exc:
        raise ServingError(f"key file is not JSON ({exc})", file=key_file, fix="restart with `mlic serve`") from exc


def token_expired(key_file: Path, kind: str = "inference") -> bool:
    """TorchServe keys expire (60 min by default); the key file says when."""
    expires = read_key_file(key_file)[kind]["expiration time"]
    return datetime.fromisoformat(expires.replace("Z", "+00:00")) <= datetime.now(UTC)


def inference_token(key_file: Path) -> str:
    return str(read_key_file(key_file)["inference"]["key"])
