"""The Docker images, built by `make images` and run for real on a local engine (`make test-containers`).

- serving: the image's own command serves a pipeline package artifact mounted at /mnt/models (the
  layout KServe's storage initializer gives it), with TorchServe's token on, and passes the local
  endpoint's checks: the model's own scores, a 400 for bad input, a refused token, the readiness
  probe, and every process unprivileged.
- `make images REGISTRY=...`: a push to a real registry (Debian's docker-registry on a free
  loopback port) is recorded by the digest the registry answered, and compile names it.
- runtime: the steps run as the image's user with no network at all (what a cluster pod with a
  locked-down egress sees): prepare, validate, graph, train and evaluate on a tiny set; and the
  whole pipeline under kfp.local's DockerRunner, each task in the image.

The engine may have no bridge network (NOTES: `dockerd --bridge=none`), so the serving container
shares the host's network on free loopback ports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mlic.cli import app
from mlic.config import PackageConfig, config_from_dict
from mlic.data.images import decode_image
from mlic.data.transforms import to_model_input
from mlic.kubeflow.images import RECORD_FILE, BuildOptions, BuiltImage, push, read_record, write_record
from mlic.kubeflow.kserve import CONFIG_FILE, MODEL_MOUNT, kserve_properties, write_kserve_layout
from mlic.kubeflow.local import run_local
from mlic.models.saved import load_model
from mlic.paths import Paths
from mlic.serving.archive import address_properties, write_properties
from mlic.serving.client import INVALID_KEY_TYPE, error_body
from mlic.serving.endpoint import KEY_FILE, inference_token
from mlic.serving.probe import probe_image

pytestmark = [pytest.mark.container, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("MLIC_DOCKER", "docker")
UNPRIVILEGED_UID = "10001"
START_TIMEOUT_S = 180


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise AssertionError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[-1500:]}")
    return done


@pytest.fixture(scope="module")
def images() -> dict[str, BuiltImage]:
    """The images `make images` recorded (`make test-containers` builds them first)."""
    record = read_record(PROJECT / RECORD_FILE)
    assert set(record) >= {"runtime", "serving"}, f"no images recorded in {PROJECT / RECORD_FILE}: run `make images`"
    return record


@pytest.fixture
def container_name() -> Iterator[str]:
    """A unique container name, removed after the test whatever happened."""
    name = f"mlic-test-{uuid.uuid4().hex[:10]}"
    yield name
    docker("rm", "--force", name, check=False, timeout=120)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _token_on_layout(packaged_root: Path, target: Path, ports: dict[str, int]) -> Path:
    """The pipeline's package artifact, with TorchServe's token on and free ports (a pod keeps
    8080 and the token off: there Istio decides who may call)."""
    package = PackageConfig(batch_size=4, max_batch_delay_ms=100)
    layout = write_kserve_layout(Paths(packaged_root), package, target)
    properties = {**kserve_properties(package), **address_properties(ports), "disable_token_authorization": "false"}
    write_properties(layout / CONFIG_FILE, properties, "the package artifact's settings with the token on")
    return layout


def _wait_for_prediction(url: str, key_file: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no key file yet"
    while time.monotonic() < deadline:
        if key_file.is_file():
            try:
                response = httpx.post(
                    url, content=probe_image(), headers={"Authorization": f"Bearer {inference_token(key_file)}"}
                )
            except httpx.HTTPError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:300]}"
        state = docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
        assert state == "true", f"the serving container exited: {docker('logs', name, check=False).stderr[-3000:]}"
        time.sleep(1)
    raise AssertionError(f"no prediction within {START_TIMEOUT_S} s ({last}): {docker('logs', name).stdout[-3000:]}")


def test_serving_image_serves_the_package_artifact_as_the_local_endpoint_does(
    images: dict[str, BuiltImage], packaged_root: Path, tmp_path: Path, container_name: str
) -> None:
    names = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    layout = _token_on_layout(packaged_root, tmp_path / "model_archive", ports)
    workdir = tmp_path / "work"  # TorchServe's working directory: its key file and logs
    workdir.mkdir(mode=0o777)
    workdir.chmod(0o777)  # the container's user is 10001, not ours
    docker(
        "run", "--detach", "--name", container_name, "--network", "host",
        "--volume", f"{layout}:{MODEL_MOUNT}:ro", "--volume", f"{workdir}:/work", "--workdir", "/work",
        images["serving"].reference,
    )  # fmt: skip
    url = f"http://127.0.0.1:{ports['inference']}/predictions/mlic"
    key_file = workdir / KEY_FILE
    _wait_for_prediction(url, key_file, container_name)
    token = {"Authorization": f"Bearer {inference_token(key_file)}"}

    photo = tmp_path / "photo.png"
    photo.write_bytes(probe_image(40))
    answer = httpx.post(url, content=photo.read_bytes(), headers={**token, "X-All-Scores": "true"}, timeout=60)
    assert answer.status_code == 200, answer.text
    model, spec = load_model(packaged_root / "artifacts" / "models" / "baseline")
    with torch.inference_mode():
        batch = to_model_input(decode_image(photo, name=photo.name), spec["image_size"]).unsqueeze(0)
        expected = torch.sigmoid(model(batch))[0].tolist()
    assert answer.json()["scores"] == pytest.approx(dict(zip(spec["label_names"], expected, strict=True)), abs=1e-5)

    for body in (b"definitely not an image", b"", photo.read_bytes()[:60]):
        bad = httpx.post(url, content=body, headers=token, timeout=60)
        assert bad.status_code == 400 and bad.json()["type"] == "BadInput", bad.text
    for headers in ({}, {"Authorization": "Bearer wrongkey"}):
        refused = httpx.post(url, content=photo.read_bytes(), headers=headers, timeout=60)
        assert refused.status_code == 400 and error_body(refused).get("type") == INVALID_KEY_TYPE, refused.text

    v1_url = f"http://127.0.0.1:{ports['inference']}/v1/models/mlic:predict"
    probe = docker("exec", container_name, "python", "-m", "mlic.serving.probe", "--url", v1_url,
                   "--token-file", f"/work/{KEY_FILE}", check=False)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    processes = docker("top", container_name, "-eo", "pid,uid,args").stdout.splitlines()[1:]  # tini, java, workers
    assert any("org.pytorch.serve.ModelServer" in line for line in processes), processes
    assert {line.split()[1] for line in processes} == {UNPRIVILEGED_UID}, processes


def test_runtime_image_runs_the_steps_unprivileged_and_offline(
    images: dict[str, BuiltImage], tmp_path: Path, container_name: str
) -> None:
    project = tmp_path / "project"
    project.mkdir(mode=0o777)
    project.chmod(0o777)
    (project / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    tiny = (
        "--set data.synthetic.num_images=120 --set data.synthetic.image_size=32 --set train.image_size=32 "
        "--set train.epochs=1 --set train.batch_size=16 --set validate.min_positives=1"
    )
    script = " && ".join(
        [
            "id -u > whoami",
            f"mlic prepare {tiny}",
            f"mlic validate {tiny}",
            f"mlic graph {tiny}",
            f"mlic train --arch baseline {tiny}",
            f"mlic evaluate {tiny} --set architectures=[baseline] --set evaluate.min_map=0",
        ]
    )
    done = docker(
        "run", "--name", container_name, "--network", "none", "--volume", f"{project}:/project",
        "--workdir", "/project", images["runtime"].reference, "sh", "-c", script,
        timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (project / "whoami").read_text().strip() == UNPRIVILEGED_UID
    metrics = json.loads(Paths(project).evaluation_metrics.read_text())
    assert "baseline" in json.dumps(metrics)


def test_the_pipeline_runs_under_kfp_local_each_task_in_the_runtime_image(
    images: dict[str, BuiltImage], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """kfp.local's DockerRunner: every task a container of the runtime image (the components'
    base image), outputs in the bind-mounted run folder, to the packaged model."""
    tiny = {
        "architectures": ["baseline", "mlgcn"],
        "data": {"synthetic": {"num_images": 60, "image_size": 32}},
        "validate": {"min_positives": 1},
        "train": {"image_size": 32, "epochs": 1, "batch_size": 16, "max_steps_per_epoch": 2},
        "models": {"mlgcn": {"hidden_dim": 64}},
        "evaluate": {"min_map": 0.0},
    }
    runtime = images["runtime"].reference
    run = run_local(json.dumps(config_from_dict(tiny).to_dict()), {}, tmp_path / "kfp", image=runtime)
    printed = capfd.readouterr().out
    assert run.gate_passed and run.model_archive is not None
    assert (run.model_archive / "model-store" / "mlic.mar").is_file()
    assert {"baseline.mAP", "mlgcn.mAP", "best_mAP"} <= set(run.metrics), run.metrics
    tasks = printed.count(f"Found image '{runtime}'")
    assert tasks >= 9, printed[-3000:]  # check, plan, resolve, fetch, prepare, validate, graph, 2 × train, …


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real image registry (Debian's docker-registry) on a free loopback port; the engine pushes
    to 127.0.0.0/8 over plain HTTP without being told to."""
    (port,) = _free_ports(1)
    config = tmp_path / "registry.yml"
    settings = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    config.write_text(yaml.safe_dump(settings))
    with open(tmp_path / "registry.log", "wb") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.2)
        yield f"127.0.0.1:{port}/mlic"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_pushed_image_is_recorded_by_digest_and_compiled_into_the_pipeline(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push path of `make images REGISTRY=...`, on a one-file image (what is pushed does not
    matter to it, and the real ones are 7 GB)."""
    (tmp_path / "marker").write_text("pushed by the container tests")
    tag = f"mlic-runtime:push-test-{uuid.uuid4().hex[:8]}"
    archive = subprocess.run(["tar", "-C", str(tmp_path), "-c", "marker"], capture_output=True, check=True).stdout
    imported = subprocess.run([DOCKER, "import", "-", tag], input=archive, capture_output=True, check=True)
    image_id = imported.stdout.decode().strip()
    built = BuiltImage("runtime", tag, image_id, 0, 0.0)
    try:
        pushed = push(built, BuildOptions(registry=registry, docker=DOCKER))
        assert pushed.pinned is not None and pushed.pinned.startswith(f"{registry}/mlic-runtime@sha256:")
        digest = pushed.pinned.split("@", 1)[1]
        manifest = httpx.head(
            f"http://{registry.split('/')[0]}/v2/mlic/mlic-runtime/manifests/{tag.split(':')[1]}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        assert manifest.headers["Docker-Content-Digest"] == digest  # the registry's own answer
        write_record(tmp_path / RECORD_FILE, [pushed])
        monkeypatch.chdir(tmp_path)
        output = tmp_path / "mlic.yaml"
        params = PROJECT / "params.yaml"
        result = CliRunner().invoke(app, ["pipeline", "compile", "--output", str(output), "--params", str(params)])
        assert result.exit_code == 0 and "warning" not in result.output, result.output
        ir, _platform = yaml.safe_load_all(output.read_text())
        images = {executor["container"]["image"] for executor in ir["deploymentSpec"]["executors"].values()}
        assert images == {pushed.pinned}
    finally:
        docker("rmi", "--force", tag, f"{registry}/{tag}", check=False)
