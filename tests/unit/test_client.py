"""The prediction client against a small real HTTP server on 127.0.0.1 that answers as TorchServe
does (503 while busy, 400 InvalidKeyException for a stale token): retries, backoff, renewal,
per-image results; and how `mlic predict` finds its images."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from http_stub import QuietHandler, origin, serving

from mlic.errors import DataError
from mlic.serving.client import (
    KeyFileToken,
    PredictionClient,
    RetryPolicy,
    StaticToken,
    expand_images,
    results_table,
)

FAST = RetryPolicy(attempts=3, backoff_s=0.01)
ANSWER = {"labels": [{"label": "boat", "score": 0.9}]}


class FakeTorchServe(ThreadingHTTPServer):
    """Answers each POST from a script keyed by the request body; records what it got."""

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        super().__init__(address, handler)
        self.valid_token = "good"
        #: body → statuses still to answer before a 200 (e.g. [503, 503]).
        self.busy: dict[bytes, list[int]] = {}
        self.seen: list[tuple[bytes, str | None]] = []

    @property
    def url(self) -> str:
        return f"{origin(self)}/predictions/mlic"


class _Handler(QuietHandler):
    server: FakeTorchServe

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        token = self.headers.get("Authorization")
        self.server.seen.append((body, token))
        if token != f"Bearer {self.server.valid_token}":
            self._send(400, {"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed"})
        elif body == b"junk":
            self._send(400, {"code": 400, "type": "BadInput", "message": "cannot decode image", "fix": "send an image"})
        elif self.server.busy.get(body):
            self._send(self.server.busy[body].pop(0), {"code": 503, "message": "Prediction failed"})
        else:
            self._send(200, ANSWER)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_server() -> Iterator[FakeTorchServe]:
    with serving(_Handler, FakeTorchServe) as server:
        yield server


def _images(folder: Path, **contents: bytes) -> list[Path]:
    paths = []
    for name, data in contents.items():
        path = folder / f"{name}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_each_image_gets_its_own_result_and_503s_are_retried(fake_server: FakeTorchServe, tmp_path: Path) -> None:
    fake_server.busy = {b"busy": [503, 503], b"down": [503, 503, 503]}
    images = _images(tmp_path, ok=b"ok", busy=b"busy", junk=b"junk", down=b"down")
    client = PredictionClient(fake_server.url, StaticToken("good"), retry=FAST, concurrency=4)
    ok, busy, junk, down = client.predict_paths(images)
    assert (ok.status, ok.answer, ok.attempts) == (200, ANSWER, 1)
    assert (busy.status, busy.answer, busy.attempts) == (200, ANSWER, 3)  # two 503s, then answered
    assert (junk.status, junk.attempts) == (400, 1) and "cannot decode image" in junk.error.message
    assert junk.error.file == str(images[2]) and junk.error.fix == "send an image"  # a 4xx is never retried
    assert (down.status, down.attempts) == (503, 3) and "server error HTTP 503" in down.error.message
    assert [body for body, _ in fake_server.seen].count(b"junk") == 1


def test_an_unreadable_file_fails_only_itself(fake_server: FakeTorchServe, tmp_path: Path) -> None:
    (good,) = _images(tmp_path, good=b"ok")
    results = PredictionClient(fake_server.url, StaticToken("good")).predict_paths([good, tmp_path / "gone.png"])
    assert [result.status for result in results] == [200, None]
    assert isinstance(results[1].error, DataError) and "cannot read the image" in results[1].error.message
    table = results_table(results)
    assert table.splitlines()[0].split() == ["image", "status", "labels", "(score)", "or", "error"]
    assert f"{good}  200     boat 0.90" in table and "cannot read the image" in table


def test_a_refused_connection_is_retried_then_named(tmp_path: Path) -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    (image,) = _images(tmp_path, a=b"ok")
    (result,) = PredictionClient(f"http://127.0.0.1:{port}/predictions/mlic", retry=FAST).predict_paths([image])
    assert result.status is None and result.attempts == FAST.attempts
    assert "cannot connect" in result.error.message and "mlic serve" in result.error.fix


def test_a_rejected_token_is_re_read_from_the_key_file(fake_server: FakeTorchServe, tmp_path: Path) -> None:
    """The server rotated its key: the client re-reads the key file once, then succeeds."""
    key_file = tmp_path / "key_file.json"
    keys = {"inference": {"key": "stale", "expiration time": "2999-01-01T00:00:00Z"}, "API": {"key": "api"}}
    key_file.write_text(json.dumps(keys))
    client = PredictionClient(fake_server.url, KeyFileToken(key_file), retry=FAST)
    images = _images(tmp_path, a=b"ok")
    (rejected,) = client.predict_paths(images)
    assert rejected.status == 400 and "rejected the inference token" in rejected.error.message
    assert str(key_file) in rejected.error.fix
    keys["inference"]["key"] = "good"
    key_file.write_text(json.dumps(keys))
    (renewed,) = client.predict_paths(images)  # the cached "stale" first, then the file's new key
    assert renewed.status == 200 and renewed.attempts == 2
    assert [token for _, token in fake_server.seen] == ["Bearer stale", "Bearer stale", "Bearer good"]


def test_backoff_doubles_up_to_its_cap_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.delay(attempt) for attempt in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(0, retry_after="2") == 2.0 and policy.delay(0, retry_after="60") == 3.0


def test_files_folders_and_globs_expand_to_each_image_once(tmp_path: Path) -> None:
    (tmp_path / "album" / "deep").mkdir(parents=True)
    a, b, c = (tmp_path / "album" / "a.jpg", tmp_path / "album" / "deep" / "b.PNG", tmp_path / "c.png")
    for path in (a, b, c, tmp_path / "album" / "notes.txt"):
        path.write_bytes(b"x")
    found = expand_images([str(c), str(tmp_path / "album"), str(tmp_path / "**" / "*.jpg")])
    assert found == [c, a, b]
    for argument, message in (("nothere.jpg", "no such file"), (str(tmp_path / "*.gif"), "matches no file")):
        with pytest.raises(DataError, match=message):
            expand_images([argument])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image"):
        expand_images([str(tmp_path / "empty")])
