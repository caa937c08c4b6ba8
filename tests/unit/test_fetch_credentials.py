"""A data repository URL that carries a token: the token reaches no log line, error or artifact
metadata of the fetch tasks. Real git and dvc against a git repository served over HTTP on
127.0.0.1 (git reads it; dvc's own git client refuses that plain-file HTTP server, which gives a
real failure to check the error of)."""

from __future__ import annotations

import functools
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from http_stub import QuietHandler, serving

from mlic.errors import PipelineError
from mlic.kubeflow import tasks
from mlic.urls import redact

TOKEN = "s3cr3t-t0ken"
#: A credential given the way the pipeline gives it (a Secret's key as an environment variable).
SECRET_ENV = {"AWS_SECRET_ACCESS_KEY": "pl4nted-s3cret", "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=pl4nted"}


@dataclass
class Artifact:
    """What a kfp artifact gives a task: a local path, a URI and metadata."""

    path: str
    uri: str = "minio://mlpipeline/fetch/data"
    metadata: dict[str, Any] = field(default_factory=dict)


class QuietFiles(QuietHandler, SimpleHTTPRequestHandler):
    """Serves a folder's files; quiet, as the test reads the task's log, not the server's."""


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=mlic", "-c", "user.email=mlic@example.com"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo_url(tmp_path: Path) -> Iterator[str]:
    """A bare repository with data/raw/ committed, served read-only over HTTP; its URL with a token."""
    work = tmp_path / "work"
    (work / "data" / "raw").mkdir(parents=True)
    (work / "data" / "raw" / "labels.csv").write_text("image,labels\n", encoding="utf-8")
    git("init", "-q", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "data", cwd=work)
    served = tmp_path / "served"
    served.mkdir()
    git("clone", "-q", "--bare", str(work), str(served / "data.git"), cwd=tmp_path)
    git("update-server-info", cwd=served / "data.git")
    with serving(functools.partial(QuietFiles, directory=str(served))) as server:
        yield f"http://mlic:{TOKEN}@127.0.0.1:{server.server_address[1]}/data.git"


def test_redact_hides_the_userinfo_of_every_url() -> None:
    text = "clone https://user:tok@example.com/a.git failed; s3://bucket/x and https://tok@h/b"
    assert redact(text) == "clone https://***@example.com/a.git failed; s3://bucket/x and https://***@h/b"
    assert redact("https://example.com/a.git") == "https://example.com/a.git"


def files_holding(folder: Path, secret: str) -> list[Path]:
    """Every file under `folder` whose bytes contain `secret`."""
    return [path for path in folder.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def test_a_token_in_the_url_reaches_no_log_error_metadata_or_file(
    repo_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # whatever git or dvc write beside the task lands here, to be grepped
    caplog.set_level(logging.DEBUG)
    commit = tasks.resolve_data_revision(repo_url, "")
    assert len(commit) == 40
    assert "***@127.0.0.1" in caplog.text  # the lookup was logged, without the token

    data = Artifact(path=str(tmp_path / "data"))
    with pytest.raises(PipelineError) as failure:
        tasks.fetch_data(repo_url, commit, "data/raw", data)
    error = str(failure.value)
    assert "dvc get http://***@127.0.0.1" in error  # the URL is still there to debug with, without the token
    assert data.metadata["repo_url"] == redact(repo_url) and data.metadata["commit"] == commit

    for secret in [TOKEN, *SECRET_ENV.values()]:
        for where, text in {"log": caplog.text, "error": error, "metadata": repr(data.metadata)}.items():
            assert secret not in text, where
        assert files_holding(tmp_path, secret) == []  # the fetched data, git's and dvc's own files


def test_a_missing_revision_names_the_repository_without_its_token(repo_url: str) -> None:
    with pytest.raises(PipelineError, match="not found") as failure:
        tasks.resolve_data_revision(repo_url, "no-such-branch")
    assert TOKEN not in str(failure.value) and "***@127.0.0.1" in str(failure.value)
