"""`mlic pipeline submit` through the real kfp.Client against a small KFP REST API on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from http_stub import QuietHandler, origin, serving
from pinned_image import PINNED_IMAGE
from typer.testing import CliRunner

from mlic.cli import app
from mlic.config import load_config
from mlic.errors import PipelineError

PROJECT = Path(__file__).resolve().parents[2]
PARAMS = PROJECT / "params.yaml"
API = "/apis/v2beta1"


@dataclass
class FakeKfp:
    """Answers healthz, experiment lookup/creation and run creation; records every request."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    #: path prefix → HTTP status to answer instead (e.g. {"/apis/v2beta1/runs": 500})
    failures: dict[str, int] = field(default_factory=dict)
    #: What healthz answers; the KFP UI's healthz adds the release (apiServerTagName).
    healthz: dict[str, Any] = field(default_factory=lambda: {"multi_user": False, "apiServerTagName": "2.14.3"})

    def answer(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        for prefix, status in self.failures.items():
            if path.startswith(prefix):
                return status, {"error_message": "injected failure", "code": status}
        route = path.split("?")[0]
        if method == "GET" and route == f"{API}/healthz":
            return 200, self.healthz
        if method == "GET" and route == f"{API}/experiments":
            return 200, {"experiments": [], "total_size": 0}
        if method == "POST" and route == f"{API}/experiments":
            return 200, {"experiment_id": "exp-1", "display_name": body["display_name"]}
        if method == "POST" and route == f"{API}/runs":
            return 200, {
                "run_id": "run-42",
                "display_name": body["display_name"],
                "experiment_id": body["experiment_id"],
            }
        return 404, {"error_message": f"no route {method} {route}"}

    def requests(self, method: str, route: str) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["method"] == method and call["path"].split("?")[0] == route]


def handler_for(fake: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.calls.append(
                {"method": method, "path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
            )
            status, payload = fake.answer(method, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


@pytest.fixture
def kfp_api() -> Iterator[tuple[str, FakeKfp]]:
    fake = FakeKfp()
    with serving(handler_for(fake)) as server:
        yield origin(server), fake


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)


def mlic(*args: str) -> Any:
    return CliRunner().invoke(app, ["pipeline", *args])


def submit(host: str, *args: str) -> Any:
    """`mlic pipeline submit` of params.yaml with a pinned image (a tag alone is refused)."""
    return mlic("submit", "--host", host, "--params", str(PARAMS), "--image", PINNED_IMAGE, *args)


def test_submit_sends_the_compiled_spec_with_the_arguments(
    kfp_api: tuple[str, FakeKfp], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, fake = kfp_api
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "s3cret")
    overrides = ["--params", str(PARAMS), "--set", "train.epochs=3", "--image", PINNED_IMAGE]
    compiled = tmp_path / "mlic.yaml"
    assert mlic("compile", "--output", str(compiled), *overrides).exit_code == 0

    result = mlic(
        "submit", "--host", host, "--experiment", "nightly", "--run-name", "data-v2",
        "--param", "data_repo_url=https://git.example.com/data.git", "--param", "data_rev=v2", *overrides,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "run-42" in result.output and f"{host}/#/runs/details/run-42" in result.output

    (experiment,) = fake.requests("POST", f"{API}/experiments")
    assert experiment["body"]["display_name"] == "nightly"
    (run,) = fake.requests("POST", f"{API}/runs")
    assert run["body"]["display_name"] == "data-v2"
    assert run["body"]["experiment_id"] == "exp-1"
    pipeline_spec, platform_spec = yaml.safe_load_all(compiled.read_text())
    # kfp.Client nests both documents: the platform spec (tolerations, /dev/shm, Secrets) travels too.
    assert run["body"]["pipeline_spec"] == {"pipeline_spec": pipeline_spec, "platform_spec": platform_spec}
    arguments = run["body"]["runtime_config"]["parameters"]
    assert arguments["data_repo_url"] == "https://git.example.com/data.git" and arguments["data_rev"] == "v2"
    assert json.loads(arguments["params"]) == load_config(PARAMS, ["train.epochs=3"]).to_dict()
    assert all(call["authorization"] == "Bearer s3cret" for call in fake.calls)


def test_no_cache_turns_caching_off_for_every_task(kfp_api: tuple[str, FakeKfp]) -> None:
    """Nested tasks included (train in the loop, package in the gate), which kfp's override misses."""
    host, fake = kfp_api
    assert submit(host, "--no-cache").exit_code == 0
    (run,) = fake.requests("POST", f"{API}/runs")
    spec = run["body"]["pipeline_spec"]["pipeline_spec"]
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    caching = [
        task.get("cachingOptions", {}).get("enableCache", False) for dag in dags for task in dag["tasks"].values()
    ]
    assert caching and not any(caching)


def test_rejected_credentials_are_a_clear_error(kfp_api: tuple[str, FakeKfp], monkeypatch: pytest.MonkeyPatch) -> None:
    host, fake = kfp_api
    fake.failures[API] = 401
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "expired")
    result = submit(host)
    assert result.exit_code == PipelineError.exit_code
    assert "refused the credentials (HTTP 401)" in result.output and "KF_PIPELINES_TOKEN" in result.output
    assert not fake.requests("POST", f"{API}/runs")


def test_a_failing_api_is_a_clear_error(kfp_api: tuple[str, FakeKfp]) -> None:
    host, fake = kfp_api
    fake.failures[f"{API}/runs"] = 500
    result = submit(host)
    assert result.exit_code == PipelineError.exit_code
    assert "answered HTTP 500" in result.output and "injected failure" in result.output
    assert len(fake.requests("POST", f"{API}/runs")) == 1  # the run was sent once, not retried blindly


@pytest.mark.parametrize("healthz", [{"apiServerTagName": "2.5.0"}, {"frontendTagName": "v2.13.1"}])
def test_a_backend_older_than_2_14_is_refused_before_sending(
    kfp_api: tuple[str, FakeKfp], healthz: dict[str, Any]
) -> None:
    host, fake = kfp_api
    fake.healthz = healthz
    result = submit(host)
    assert result.exit_code == PipelineError.exit_code
    assert "needs >= 2.14.0" in result.output and "upgrade Kubeflow Pipelines" in result.output
    assert not fake.requests("POST", f"{API}/runs")


def test_a_backend_that_names_no_release_is_still_sent_the_run(kfp_api: tuple[str, FakeKfp]) -> None:
    """The API server's own healthz names no release: nothing to check, so the run goes."""
    host, fake = kfp_api
    fake.healthz = {"multi_user": False}
    assert submit(host).exit_code == 0
    assert len(fake.requests("POST", f"{API}/runs")) == 1


def test_an_unreachable_host_is_a_clear_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = submit(f"http://127.0.0.1:{port}")
    assert result.exit_code == PipelineError.exit_code
    assert "cannot reach the KFP API" in result.output and "port-forward" in result.output


def test_unknown_pipeline_parameters_are_refused_before_sending(kfp_api: tuple[str, FakeKfp]) -> None:
    host, fake = kfp_api
    result = submit(host, "--param", "epochs=3")
    assert result.exit_code == PipelineError.exit_code
    assert "data_repo_url" in result.output and "--set" in result.output
    assert not fake.calls


def test_a_data_url_with_credentials_is_refused_before_sending(kfp_api: tuple[str, FakeKfp]) -> None:
    """KFP keeps run parameters in plain text: the token belongs in a Secret (--data-secret)."""
    host, fake = kfp_api
    result = submit(host, "--param", "data_repo_url=https://mlic:t0ken@git.example.com/data.git")
    assert result.exit_code == PipelineError.exit_code, result.output
    assert "data_repo_url carries credentials (https://***@git.example.com/data.git)" in result.output
    assert "--data-secret" in result.output and "t0ken" not in result.output
    assert not fake.calls
    mistyped = submit(host, "--param", "repo=https://mlic:t0ken@git.example.com/data.git")
    assert mistyped.exit_code == PipelineError.exit_code and "t0ken" not in mistyped.output


def test_an_image_by_tag_alone_is_refused_before_sending(kfp_api: tuple[str, FakeKfp]) -> None:
    """A tag is mutable and KFP's cache key holds the image string: a rebuild would reuse stale results."""
    host, fake = kfp_api
    result = mlic("submit", "--host", host, "--params", str(PARAMS), "--image", "registry.example.com/mlic:1")
    assert result.exit_code == PipelineError.exit_code
    assert "registry.example.com/mlic:1 is not pinned by digest" in result.output
    assert "--allow-mutable-tag" in result.output and "@sha256:" in result.output
    assert not fake.calls
