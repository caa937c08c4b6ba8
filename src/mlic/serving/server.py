"""Start and stop a local TorchServe for the packaged model (`mlic serve`, tests, benchmarks).

Each server gets its own state folder (`paths.serve_state`): it is TorchServe's working
directory (key_file.json lands there), its TMPDIR/TEMP (TorchServe keeps one pid file and its
worker sockets in the temp folder, shared by every instance on the machine otherwise) and its
log folder. Ports other than the inference port are always free ones, so several servers (tests,
developers) can run side by side. `/ping` says Healthy before the model can answer, so a server
counts as started only when a real prediction has succeeded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from mlic.errors import ServingError
from mlic.io import write_json
from mlic.paths import Paths
from mlic.serving import client
from mlic.serving.archive import DEFAULT_PORTS, LOCAL_HOST, address_properties, read_properties, write_properties
from mlic.serving.endpoint import Endpoint, inference_token, is_torchserve, recorded_endpoint, state_file
from mlic.serving.probe import probe_image

logger = logging.getLogger(__name__)

PID_FILE = ".model_server.pid"
START_TIMEOUT_S = 120.0
#: TorchServe's 503 message when the handler raised: a model that fails on the probe image stays broken.
HANDLER_FAILED = "Prediction failed"
#: Our handler's own answers when it failed on the probe image (predictor.failure_body): as broken.
HANDLER_FAILURE_TYPES = frozenset({"PredictionFailed", "InternalServerError"})
STOP_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.5
LOG_TAIL_LINES = 8
#: A Python exception line in a log ("mlic.errors.ServingError: ...").
_ERROR_LINE = re.compile(r"\w(Error|Exception): ")


@contextlib.contextmanager
def _bound_socket(port: int) -> Iterator[socket.socket]:
    """A socket bound on the loopback (port 0 = any free one): proves the port is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOCAL_HOST, port))
        except OSError as exc:
            raise ServingError(
                f"port {port} on {LOCAL_HOST} is in use ({exc.strerror})",
                field="--port",
                fix="pass another --port, or 0 for a free one",
            ) from exc
        yield probe


def _choose_ports(inference_port: int) -> dict[str, int]:
    """The inference port as asked (0 = free) and free, distinct ports for every other API.

    All sockets stay bound until every port is chosen, so no two APIs get the same one.
    """
    with contextlib.ExitStack() as bound:
        sockets = {
            name: bound.enter_context(_bound_socket(inference_port if name == "inference" else 0))
            for name in DEFAULT_PORTS
        }
        return {name: int(probe.getsockname()[1]) for name, probe in sockets.items()}


def _environment(state_dir: Path) -> dict[str, str]:
    """TorchServe's temp folder (pid file, sockets) and logs inside this server's state folder."""
    env = {key: value for key, value in os.environ.items() if key != "TS_CONFIG_FILE"}
    temp = str(state_dir / "tmp")
    env.update(TMPDIR=temp, TEMP=temp, LOG_LOCATION=str(state_dir / "logs"), METRICS_LOCATION=str(state_dir / "logs"))
    return env


def _torchserve(state_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the TorchServe launcher; its output (and the forked Java's) goes to a file: a pipe would hang."""
    log_file = state_dir / "logs" / "launcher.log"
    with open(log_file, "ab") as log:
        try:
            return subprocess.run(
                [sys.executable, "-m", "ts.model_server", *args],
                cwd=state_dir,
                env=_environment(state_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=STOP_TIMEOUT_S + 30,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServingError(f"`torchserve {args[0]}` did not return", file=log_file, fix="read the log") from exc


def _log_excerpt(state_dir: Path) -> str:
    """The last error in the model log (a handler that cannot load), else the last lines of a log."""
    for name in ("model_log.log", "ts_log.log", "launcher.log"):
        log = state_dir / "logs" / name
        if not (log.is_file() and log.stat().st_size):
            continue
        lines = [line.split(" - ", 1)[-1] for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
        errors = [index for index, line in enumerate(lines) if _ERROR_LINE.search(line)]
        shown = lines[errors[-1] : errors[-1] + 3] if errors else lines[-LOG_TAIL_LINES:]
        return f"from {log}:\n    " + "\n    ".join(shown)
    return "no log was written"


def _wait_until_predicting(endpoint: Endpoint, timeout_s: float) -> None:
    """Poll with a real prediction: /ping is Healthy long before (or without) a working model."""
    deadline = time.monotonic() + timeout_s
    probe = probe_image()
    last_problem = "TorchServe did not start"
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0)) as http:
        while time.monotonic() < deadline:
            if not is_torchserve(endpoint.pid):
                raise ServingError(
                    f"TorchServe exited during start-up; {_log_excerpt(endpoint.state_dir)}",
                    file=endpoint.log_dir,
                    fix="read the logs for the cause",
                )
            if endpoint.key_file.is_file():
                try:
                    token = inference_token(endpoint.key_file)
                    response = client.post_image(http, endpoint.prediction_url, probe, token)
                except ServingError as exc:
                    last_problem = exc.message
                except httpx.HTTPError as exc:
                    last_problem = str(exc)
                else:
                    if response.status_code == 200:
                        return
                    body = client.error_body(response)
                    last_problem = f"HTTP {response.status_code}: {body.get('message')}"
                    if body.get("message") == HANDLER_FAILED or body.get("type") in HANDLER_FAILURE_TYPES:
                        break  # the handler failed on a valid image: no use waiting
            time.sleep(POLL_INTERVAL_S)
    raise ServingError(
        f"the model did not answer a prediction ({last_problem}); {_log_excerpt(endpoint.state_dir)}",
        file=endpoint.log_dir,
        fix="read the logs; a worker that keeps restarting usually means the handler cannot import or load",
    )


def _java() -> Path:
    """The java TorchServe's launcher will run: $JAVA_HOME/bin/java, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    found = shutil.which(str(Path(java_home) / "bin" / "java") if java_home else "java")
    if found is None:
        where = f"$JAVA_HOME/bin/java ({java_home})" if java_home else "`java` on PATH"
        raise ServingError(
            f"Java not found: TorchServe's frontend is a Java program and {where} does not exist",
            field="JAVA_HOME" if java_home else "PATH",
            fix="install a Java 17 runtime (e.g. `apt-get install openjdk-17-jre-headless`) or point JAVA_HOME at one",
        )
    return Path(found)


def _packaged_model(properties: dict[str, str], paths: Paths) -> tuple[str, str]:
    """(model name, archive file name) from the `models` entry `mlic package` wrote."""
    try:
        model_name, versions = next(iter(json.loads(properties["models"]).items()))
        archive_name = str(next(iter(versions.values()))["marName"])
    except (KeyError, StopIteration, AttributeError, json.JSONDecodeError) as exc:
        raise ServingError(
            f"no packaged model in the 'models' entry ({exc!r})",
            file=paths.serving_config,
            field="models",
            fix="re-run `mlic package`",
        ) from exc
    if not (paths.model_store / archive_name).is_file():
        raise ServingError("model archive not found", file=paths.model_store / archive_name, fix="run `mlic package`")
    return model_name, archive_name


def start(paths: Paths, port: int = 8080, timeout_s: float = START_TIMEOUT_S) -> Endpoint:
    """Start TorchServe on 127.0.0.1 with the packaged model; return once it has answered a prediction.

    `port` is the inference port (0 = a free one). On failure the server is stopped again and
    the error quotes its log.
    """
    recorded = recorded_endpoint(paths)
    if recorded is not None and is_torchserve(recorded.pid):
        raise ServingError(
            f"TorchServe is already running at {recorded.prediction_url} (pid {recorded.pid})",
            file=state_file(paths),
            fix="use it, or stop it first with `mlic serve --stop`",
        )
    properties = read_properties(paths.serving_config)
    model_name, archive_name = _packaged_model(properties, paths)
    _java()
    ports = _choose_ports(port)

    state_dir = paths.serve_state.resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    for folder in (state_dir / "tmp", state_dir / "logs"):
        folder.mkdir(parents=True)
    runtime_config = write_properties(
        state_dir / "config.properties",
        {**properties, **address_properties(ports)},
        f"Written by `mlic serve` from {paths.serving_config} with this server's ports.",
    )
    launched = _torchserve(
        state_dir,
        "--start",
        "--ncs",
        "--ts-config", str(runtime_config),
        "--model-store", str(paths.model_store.resolve()),
        "--models", f"{model_name}={archive_name}",
    )  # fmt: skip
    pid_file = state_dir / "tmp" / PID_FILE
    if launched.returncode != 0 or not pid_file.is_file():
        raise ServingError(
            f"torchserve --start failed (exit {launched.returncode}); {_log_excerpt(state_dir)}",
            file=state_dir / "logs",
            fix="read the launcher log",
        )
    endpoint = Endpoint(
        model_name=model_name,
        inference_url=f"http://{LOCAL_HOST}:{ports['inference']}",
        management_url=f"http://{LOCAL_HOST}:{ports['management']}",
        metrics_url=f"http://{LOCAL_HOST}:{ports['metrics']}",
        pid=int(pid_file.read_text(encoding="utf-8").strip()),
        state_dir=state_dir,
        ports=ports,
    )
    write_json(state_file(paths), endpoint.to_json())
    logger.info("TorchServe started (pid %d); waiting until the model predicts", endpoint.pid)
    try:
        _wait_until_predicting(endpoint, timeout_s)
    except BaseException:
        stop(paths)
        raise
    return endpoint


def stop(paths: Paths) -> bool:
    """Stop the server started under `paths` and wait until it and its workers are gone.

    Safe when nothing runs (returns False). Logs stay in the state folder for inspection.
    """
    endpoint = recorded_endpoint(paths)
    if endpoint is None:
        return False
    processes: list[psutil.Process] = []
    if is_torchserve(endpoint.pid):
        frontend = psutil.Process(endpoint.pid)
        processes = [frontend, *frontend.children(recursive=True)]
        _torchserve(endpoint.state_dir, "--stop", "--foreground")
    _, alive = psutil.wait_procs(processes, timeout=STOP_TIMEOUT_S)
    for process in alive:  # workers that outlived their frontend: ours, by pid
        logger.warning("killing leftover TorchServe process %d", process.pid)
        process.kill()
    psutil.wait_procs(alive, timeout=10)
    endpoint.key_file.unlink(missing_ok=True)
    shutil.rmtree(endpoint.state_dir / "tmp", ignore_errors=True)
    state_file(paths).unlink(missing_ok=True)
    logger.info("TorchServe stopped (pid %d)", endpoint.pid)
    return True


@contextlib.contextmanager
def serving(paths: Paths, port: int = 0, timeout_s: float = START_TIMEOUT_S) -> Iterator[Endpoint]:
    """Start → yield the endpoint → always stop (tests, benchmarks)."""
    endpoint = start(paths, port=port, timeout_s=timeout_s)
    try:
        yield endpoint
    finally:
        stop(paths)
