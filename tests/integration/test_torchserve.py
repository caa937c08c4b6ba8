"""A real TorchServe on 127.0.0.1 free ports: start, predict, reject bad input, keep serving, stop."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from mlic.data.images import decode_image
from mlic.data.transforms import to_model_input
from mlic.errors import ServingError
from mlic.models.saved import load_model
from mlic.paths import Paths
from mlic.serving import client, server
from mlic.serving.endpoint import Endpoint, inference_token, read_key_file, running_endpoint, token_expired

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def endpoint(packaged_root: Path) -> Iterator[Endpoint]:
    """One server for the module; `serving` stops it even when a test fails."""
    with server.serving(Paths(packaged_root), port=0) as running:
        yield running
    assert not psutil.pid_exists(running.pid)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PNG, not square and not at the model's size, so resizing is part of the comparison."""
    pixels = np.random.default_rng(1).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("images") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _auth(endpoint: Endpoint) -> dict[str, str]:
    return {**OCTET, "Authorization": f"Bearer {inference_token(endpoint.key_file)}"}


def _in_process_scores(root: Path, image: Path) -> dict[str, float]:
    model, spec = load_model(root / "artifacts" / "models" / "baseline")
    batch = to_model_input(decode_image(image, name=image.name), spec["image_size"]).unsqueeze(0)
    with torch.inference_mode():
        probabilities = torch.sigmoid(model(batch))[0].tolist()
    return dict(zip(spec["label_names"], probabilities, strict=True))


def test_prediction_matches_the_model_in_process(endpoint: Endpoint, packaged_root: Path, photo: Path) -> None:
    (answer,) = client.predict_files(Paths(packaged_root), [photo], all_scores=True)
    expected = _in_process_scores(packaged_root, photo)
    assert answer["scores"] == pytest.approx(expected, abs=1e-5)
    thresholds = json.loads(Paths(packaged_root).best_file.read_text())["thresholds"]
    chosen = {name for (name, score), threshold in zip(expected.items(), thresholds, strict=True) if score >= threshold}
    assert {item["label"] for item in answer["labels"]} == chosen
    scores = [item["score"] for item in answer["labels"]]
    assert scores == sorted(scores, reverse=True)
    (plain,) = client.predict_files(Paths(packaged_root), [photo])
    assert "scores" not in plain and plain["labels"] == answer["labels"]


def test_json_body_with_base64_image(endpoint: Endpoint, photo: Path) -> None:
    body = {"image": base64.b64encode(photo.read_bytes()).decode(), "all_scores": True}
    headers = {"Authorization": _auth(endpoint)["Authorization"]}
    response = httpx.post(endpoint.prediction_url, json=body, headers=headers, timeout=60)
    assert response.status_code == 200 and set(response.json()) == {"labels", "scores"}


def test_kserve_v1_route_answers_predictions_and_serves_the_readiness_probe(endpoint: Endpoint, photo: Path) -> None:
    """TorchServe routes KServe's v1 `:predict` to our handler: the protocol the runtime declares,
    and what the cluster's readiness probe asks (here with the token that is on locally)."""
    v1_url = f"{endpoint.inference_url}/v1/models/{endpoint.model_name}:predict"
    image = base64.b64encode(photo.read_bytes()).decode()
    body = {"instances": [{"image": image}, {"image": image, "all_scores": True}]}
    headers = {"Authorization": _auth(endpoint)["Authorization"]}
    response = httpx.post(v1_url, json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert first["labels"] == second["labels"] and "scores" in second and "scores" not in first

    def probe(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mlic.serving.probe", "--url", v1_url, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert probe("--token-file", str(endpoint.key_file)).returncode == 0
    refused = probe()  # no token: TorchServe refuses, the probe says why
    assert (
        refused.returncode == 1 and "not ready: HTTP 400" in refused.stderr and "InvalidKeyException" in refused.stderr
    )


def test_bad_input_is_a_400_with_a_message_and_the_server_keeps_serving(endpoint: Endpoint, photo: Path) -> None:
    with httpx.Client(timeout=60) as http:
        for body in (b"definitely not an image", b"", photo.read_bytes()[:60]):
            response = http.post(endpoint.prediction_url, content=body, headers=_auth(endpoint))
            assert response.status_code == 400, response.text
            error = response.json()
            assert error["type"] == "BadInput" and error["message"] and error["fix"]
        after = http.post(endpoint.prediction_url, content=photo.read_bytes(), headers=_auth(endpoint))
    assert after.status_code == 200 and "labels" in after.json()


def test_one_bad_image_in_a_batch_fails_only_itself(endpoint: Endpoint, photo: Path) -> None:
    bodies = [photo.read_bytes(), b"junk", photo.read_bytes(), photo.read_bytes(), b"junk", photo.read_bytes()]

    def send(body: bytes) -> int:
        return httpx.post(endpoint.prediction_url, content=body, headers=_auth(endpoint), timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(send, bodies))
    assert statuses == [200, 400, 200, 200, 400, 200]


def test_concurrent_requests_each_get_their_own_images_answer(
    endpoint: Endpoint, packaged_root: Path, tmp_path: Path
) -> None:
    """Eight different images at once, batched together by TorchServe: each answer is its own
    image's, as the model scores it in process (a mix-up in the batch would swap them)."""
    rng = np.random.default_rng(7)
    images = []
    for index in range(8):
        path = tmp_path / f"image-{index}.png"
        Image.fromarray(rng.integers(0, 256, size=(32 + 4 * index, 48, 3), dtype=np.uint8)).save(path)
        images.append(path)
    concurrent_client = client.PredictionClient.for_root(Paths(packaged_root), all_scores=True, concurrency=8)
    results = concurrent_client.predict_paths(images)
    assert [result.image for result in results] == [str(path) for path in images]
    scores = [result.answer["scores"] for result in results]
    for image, answer in zip(images, scores, strict=True):
        assert answer == pytest.approx(_in_process_scores(packaged_root, image), abs=1e-5), image.name
    distinct = {tuple(round(value, 4) for value in answer.values()) for answer in scores}
    assert len(distinct) == len(images)  # the images are told apart, so a swap could not pass


def test_the_client_retries_a_503_and_gives_up_on_a_400(endpoint: Endpoint, photo: Path) -> None:
    """With its workers scaled to 0, TorchServe answers 503; the client keeps trying until a worker
    is back. A 400 (bad input) is final: one try."""
    management = {"Authorization": f"Bearer {read_key_file(endpoint.key_file)['management']['key']}"}
    model = f"{endpoint.management_url}/models/{endpoint.model_name}"

    def scale(workers: int) -> None:
        params = {"min_worker": workers, "max_worker": workers, "synchronous": "true"}
        answer = httpx.put(model, params=params, headers=management, timeout=120)
        assert answer.status_code == 200, answer.text

    patient = client.PredictionClient(
        endpoint.prediction_url,
        client.KeyFileToken(endpoint.key_file, endpoint.management_url),
        retry=client.RetryPolicy(attempts=12, backoff_s=0.5, max_backoff_s=2.0),
    )
    scale(0)
    try:
        refused = httpx.post(endpoint.prediction_url, content=photo.read_bytes(), headers=_auth(endpoint), timeout=60)
        assert refused.status_code == 503, refused.text
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(patient.predict_paths, [photo])
            time.sleep(3)  # its first tries meet no worker (a request sent during a scale-up waits instead)
            scale(1)
            (result,) = pending.result(timeout=120)
    finally:
        scale(1)
    assert result.status == 200 and result.attempts > 1, (result.attempts, result.error)
    junk = photo.parent / "junk.jpg"
    junk.write_bytes(b"not an image")
    (rejected,) = patient.predict_paths([junk])
    assert rejected.status == 400 and rejected.attempts == 1


def test_client_names_the_file_the_server_rejected(endpoint: Endpoint, packaged_root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is text")
    with pytest.raises(ServingError, match="HTTP 400: cannot decode image") as caught:
        list(client.predict_files(Paths(packaged_root), [fake]))
    assert caught.value.file == str(fake)


def test_body_over_max_request_size_is_refused(endpoint: Endpoint, packaged_root: Path, tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG" + bytes(10 * 1024 * 1024))
    with pytest.raises(ServingError, match="larger than the server accepts") as caught:
        list(client.predict_files(Paths(packaged_root), [huge]))
    assert "package.max_request_size" in caught.value.fix


def test_missing_or_wrong_token_is_rejected(endpoint: Endpoint, photo: Path, monkeypatch) -> None:
    for headers in (OCTET, {**OCTET, "Authorization": "Bearer wrongkey"}):
        response = httpx.post(endpoint.prediction_url, content=photo.read_bytes(), headers=headers, timeout=60)
        assert response.status_code == 400 and client.is_token_rejection(response)
    monkeypatch.setenv(client.TOKEN_ENV, "wrongkey")
    with pytest.raises(ServingError, match="rejected the inference token") as caught:
        list(client.predict_files(Paths("."), [photo], url=endpoint.prediction_url))
    assert client.TOKEN_ENV in caught.value.fix
    monkeypatch.setenv(client.TOKEN_ENV, inference_token(endpoint.key_file))
    (answer,) = client.predict_files(Paths("."), [photo], url=endpoint.prediction_url)
    assert "labels" in answer


def test_expired_token_is_renewed_through_the_token_api(endpoint: Endpoint, packaged_root: Path, photo: Path) -> None:
    old_token = inference_token(endpoint.key_file)
    keys = read_key_file(endpoint.key_file)
    keys["inference"]["expiration time"] = "2000-01-01T00:00:00.000000Z"  # what a key looks like an hour on
    endpoint.key_file.write_text(json.dumps(keys))
    (answer,) = client.predict_files(Paths(packaged_root), [photo])
    assert "labels" in answer
    new_token = inference_token(endpoint.key_file)
    assert new_token != old_token and not token_expired(endpoint.key_file)
    stale_headers = {**OCTET, "Authorization": f"Bearer {old_token}"}
    stale = httpx.post(endpoint.prediction_url, content=photo.read_bytes(), headers=stale_headers)
    assert client.is_token_rejection(stale)


def test_server_is_locked_down(endpoint: Endpoint) -> None:
    management_key = read_key_file(endpoint.key_file)["management"]["key"]
    headers = {"Authorization": f"Bearer {management_key}"}
    with httpx.Client(timeout=30) as http:
        remote_archive = {"url": "https://example.com/x.mar"}
        register = http.post(f"{endpoint.management_url}/models", params=remote_archive, headers=headers)
        described = http.get(f"{endpoint.management_url}/models/{endpoint.model_name}", headers=headers).json()[0]
        metrics = http.get(f"{endpoint.metrics_url}/metrics")
    assert register.status_code == 405  # the management model API is off
    assert described["batchSize"] == 4 and described["maxBatchDelay"] == 100
    assert described["workers"][0]["status"] == "READY"
    assert metrics.status_code == 200 and "ts_inference_requests_total" in metrics.text
    for url in (endpoint.inference_url, endpoint.management_url, endpoint.metrics_url):
        assert url.startswith("http://127.0.0.1:")


@pytest.mark.fault(
    "a second `mlic serve` on a project whose endpoint is running",
    "refused with one message naming the running server",
    "the first server: same process, still answering predictions",
)
def test_second_start_on_the_same_root_is_refused(endpoint: Endpoint, packaged_root: Path, photo: Path) -> None:
    with pytest.raises(ServingError, match="already running"):
        server.start(Paths(packaged_root), port=0)
    assert psutil.pid_exists(endpoint.pid)
    assert running_endpoint(Paths(packaged_root)).pid == endpoint.pid  # its state file untouched
    (answer,) = client.predict_files(Paths(packaged_root), [photo])
    assert answer["labels"] is not None


@pytest.mark.fault(
    "kill -9 of the TorchServe worker process",
    "TorchServe starts a new worker; the next request succeeds",
    "the endpoint, its model and its token",
)
def test_a_killed_worker_is_restarted_and_the_next_request_succeeds(endpoint: Endpoint, photo: Path) -> None:
    def workers() -> list[psutil.Process]:
        children = psutil.Process(endpoint.pid).children(recursive=True)
        return [child for child in children if "model_service_worker" in " ".join(child.cmdline())]

    (worker,) = workers()
    worker.kill()
    psutil.wait_procs([worker], timeout=10)
    patient = client.PredictionClient(
        endpoint.prediction_url,
        client.KeyFileToken(endpoint.key_file, endpoint.management_url),
        retry=client.RetryPolicy(attempts=10, backoff_s=0.5, max_backoff_s=4.0),
    )
    (result,) = patient.predict_paths([photo])
    assert result.status == 200 and "labels" in result.answer, result.error
    (restarted,) = workers()
    assert restarted.pid != worker.pid


def test_readme_curl_example_answers(endpoint: Endpoint, photo: Path) -> None:
    """The README's curl lines, run as written against this server (its port, key file and image)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Querying the endpoint", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.lstrip().startswith(("mlic ", "#"))]
    script = "\n".join(lines).replace("8080", str(endpoint.ports["inference"]))
    script = script.replace(".mlic/serve/key_file.json", str(endpoint.key_file)).replace("image.jpg", str(photo))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "labels" in json.loads(done.stdout)


def _mlic(*args: str, root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = env or {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "mlic"), *args, "--root", str(root)], env=env, capture_output=True, text=True, timeout=400
    )


def _one_clear_error(done: subprocess.CompletedProcess[str], message: str) -> None:
    """The CLI failed with the ServingError exit code and one readable block, no traceback."""
    assert done.returncode == ServingError.exit_code, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("error: ") == 1
    assert message in done.stderr and "fix: " in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def project(packaged_root: Path, tmp_path: Path) -> Path:
    """A copy of the packaged project: a server of its own, or something to break."""
    root = tmp_path / "project"
    shutil.copytree(packaged_root / "artifacts", root / "artifacts")
    return root


def test_serve_on_a_busy_port_fails_with_one_message(project: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _mlic("serve", "--port", str(port), root=project)
    _one_clear_error(done, f"port {port} on 127.0.0.1 is in use")


def test_serve_without_the_archive_fails_with_one_message(project: Path) -> None:
    (Paths(project).model_store / "mlic.mar").unlink()
    _one_clear_error(_mlic("serve", "--port", "0", root=project), "model archive not found")


def test_serve_without_java_fails_with_one_message(project: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "JAVA_HOME"}
    env["PATH"] = str(BIN)  # the venv's commands, no java
    done = _mlic("serve", "--port", "0", root=project, env=env)
    _one_clear_error(done, "Java not found")
    assert "Java 17" in done.stderr and not (Paths(project).serve_state / "server.json").exists()


def test_cli_serve_predict_stop(project: Path, photo: Path) -> None:
    """A second server beside the module's one: its own state folder, ports and pid file.
    `mlic predict` takes files, folders and globs, answers each image on its own, table or JSON."""
    album = photo.parent / "album"
    album.mkdir(exist_ok=True)
    shutil.copy(photo, album / "copy.png")
    (album / "broken.jpg").write_text("not an image")
    try:
        started = _mlic("serve", "--port", "0", root=project)
        assert started.returncode == 0, started.stderr
        assert "/predictions/mlic" in started.stdout and "key_file.json" in started.stdout
        predicted = _mlic("predict", str(photo), "--all-scores", root=project)
        assert predicted.returncode == 0, predicted.stderr
        header, row = predicted.stdout.splitlines()
        assert header.split()[:2] == ["image", "status"]
        assert row.startswith(f"{photo}  200  ") and "| all: " in row
        mixed = _mlic("predict", str(album), str(photo.parent / "*.png"), "--json", "--concurrency", "3", root=project)
        lines = [json.loads(line) for line in mixed.stdout.splitlines()]
        assert [(line["image"], line["status"]) for line in lines] == [
            (str(album / "broken.jpg"), 400),
            (str(album / "copy.png"), 200),
            (str(photo), 200),
        ]
        assert (
            lines[0]["error"]["message"].startswith("HTTP 400: cannot decode image") and "labels" in lines[1]["answer"]
        )
        assert mixed.returncode == ServingError.exit_code and "1 of 3 images failed" in mixed.stderr
    finally:
        stopped = _mlic("serve", "--stop", root=project)
    assert stopped.returncode == 0, stopped.stderr
    after = _mlic("predict", str(photo), root=project)
    assert after.returncode == ServingError.exit_code and "mlic serve" in after.stderr


#: The packaged handler, except that its model runs out of memory on any batch of two or more
#: images and its kernel fails on a blank image even alone: failures that are not bad input,
#: planted with a forward pre-hook so the handler's own code path is the one that answers.
FAILING_HANDLER = """
import torch

from mlic.serving.handler import MlicHandler


def _fail_on_batches_and_blank_images(module, inputs):
    (batch,) = inputs
    if len(batch) > 1:
        raise torch.OutOfMemoryError("simulated: not enough memory for the batch")
    if batch.flatten(2).std(dim=2).max() == 0:
        raise RuntimeError("simulated kernel failure")


class FailingMlicHandler(MlicHandler):
    def initialize(self, context):
        super().initialize(context)
        self.served.model.register_forward_pre_hook(_fail_on_batches_and_blank_images)
"""


def _archive_with(packaged_root: Path, root: Path, replaced: dict[str, bytes]) -> Paths:
    """A copy of the packaged project whose archive has some members replaced."""
    paths = Paths(root)
    shutil.copytree(packaged_root / "artifacts", paths.root / "artifacts")
    with zipfile.ZipFile(packaged_root / "artifacts" / "serving" / "model-store" / "mlic.mar") as good:
        members = {name: good.read(name) for name in good.namelist()}
    with zipfile.ZipFile(paths.model_store / "mlic.mar", "w") as changed:
        for name, data in {**members, **replaced}.items():
            changed.writestr(name, data)
    return paths


@pytest.mark.fault(
    "the model fails on a request that is not bad input (out of memory on the batch, a kernel error on one image)",
    "the batch is scored image by image: only the image that fails alone gets a 503 naming its request id, logged",
    "the neighbours in the batch (answered 200) and the worker (it keeps answering)",
)
def test_a_failure_that_is_not_bad_input_fails_only_its_request(
    packaged_root: Path, photo: Path, tmp_path: Path
) -> None:
    paths = _archive_with(packaged_root, tmp_path / "project", {"handler.py": FAILING_HANDLER.encode()})
    blank = tmp_path / "blank.png"
    Image.new("RGB", (40, 40), (90, 90, 90)).save(blank)
    bodies = [photo.read_bytes(), blank.read_bytes(), photo.read_bytes(), photo.read_bytes()]
    with server.serving(paths, port=0) as running:
        together = threading.Barrier(len(bodies))

        def send(body: bytes) -> httpx.Response:
            together.wait()  # all at once, inside one batch delay: TorchServe batches them
            return httpx.post(running.prediction_url, content=body, headers=_auth(running), timeout=60)

        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(send, bodies))
        after = httpx.post(running.prediction_url, content=photo.read_bytes(), headers=_auth(running), timeout=60)
        model_log = (running.log_dir / "model_log.log").read_text(encoding="utf-8", errors="replace")
    assert [answer.status_code for answer in answers] == [200, 503, 200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[2].json() == after.json() and "labels" in answers[0].json()
    failed = answers[1].json()
    assert failed["type"] == "PredictionFailed" and "RuntimeError" in failed["message"]
    assert "scoring a batch of 4 failed (OutOfMemoryError" in model_log
    assert f"request {failed['request_id']} failed with HTTP 503" in model_log


def test_a_model_that_cannot_load_fails_start_with_the_log(packaged_root: Path, tmp_path: Path) -> None:
    """/ping would say Healthy here; start() waits for a real prediction, then stops and quotes the log."""
    with zipfile.ZipFile(packaged_root / "artifacts" / "serving" / "model-store" / "mlic.mar") as good:
        spec = json.loads(good.read("serving.json"))
    broken = json.dumps({**spec, "thresholds": [0.5]}).encode()
    paths = _archive_with(packaged_root, tmp_path / "project", {"serving.json": broken})
    with pytest.raises(ServingError, match="did not answer a prediction") as caught:
        server.start(paths, port=0, timeout_s=20)
    assert "model_log.log" in str(caught.value) and "thresholds" in str(caught.value)
    assert not (paths.serve_state / "server.json").exists()
    assert server.stop(paths) is False
