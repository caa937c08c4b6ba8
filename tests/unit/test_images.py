"""`mlic pipeline images`' record and build commands, and compile taking the runtime image from the
record (the builds themselves run for real in tests/containers, under `make test-containers`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pinned_image import PINNED_IMAGE
from typer.testing import CliRunner

from mlic.cli import app
from mlic.errors import PipelineError
from mlic.kubeflow.images import (
    BuildOptions,
    BuiltImage,
    build,
    build_args,
    engine_version,
    read_record,
    recorded_runtime_image,
    write_record,
)

PROJECT = Path(__file__).resolve().parents[2]
PARAMS = PROJECT / "params.yaml"


def _built(target: str, pinned: str | None = None) -> BuiltImage:
    return BuiltImage(target, f"mlic-{target}:0.1.0", "sha256:" + "1" * 64, 7_230_000_000, 496.0, pinned)


def test_build_args_name_the_target_base_index_and_ca_secret(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    options = BuildOptions(
        python_image="mlic-local/python:3.11-bookworm",
        torch_index={"serving": "https://download.pytorch.org/whl/cpu"},
        ca_bundle=ca,
        version="9.9.9",
    )
    serving = build_args("serving", options)
    assert serving[:7] == ["build", "--network", "host", "--target", "serving", "--tag", "mlic-serving:9.9.9"]
    assert "PYTHON_IMAGE=mlic-local/python:3.11-bookworm" in serving
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in serving
    assert f"id=pip-ca,src={ca.resolve()}" in serving and serving[-1] == "."
    runtime = build_args("runtime", options)
    assert not any(arg.startswith("TORCH_INDEX=") for arg in runtime)  # the runtime keeps PyPI's CUDA torch


def test_a_missing_ca_bundle_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="CA bundle not found") as caught:
        build_args("runtime", BuildOptions(ca_bundle=tmp_path / "absent.pem"))
    assert caught.value.field == "--ca-bundle"


def test_building_outside_the_repository_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no Dockerfile in the build context") as caught:
        build("runtime", BuildOptions(context=tmp_path))
    assert caught.value.file == str(tmp_path.resolve())
    with pytest.raises(PipelineError, match="unknown image target 'gpu'"):
        build("gpu", BuildOptions(context=PROJECT))


def test_no_docker_is_one_clear_error() -> None:
    with pytest.raises(PipelineError, match="no Docker engine answers") as caught:
        engine_version(BuildOptions(docker="/nonexistent/docker"))
    assert "dockerd" in caught.value.fix


def test_record_round_trip_keeps_earlier_targets(tmp_path: Path) -> None:
    record = tmp_path / ".mlic" / "images.json"
    assert read_record(record) == {} and recorded_runtime_image(record) is None
    write_record(record, [_built("runtime"), _built("serving")])
    write_record(record, [_built("runtime", pinned=PINNED_IMAGE)])
    assert read_record(record) == {"runtime": _built("runtime", PINNED_IMAGE), "serving": _built("serving")}
    assert recorded_runtime_image(record) == PINNED_IMAGE
    assert read_record(record)["serving"].reference == "mlic-serving:0.1.0"  # not pushed: the local tag


def test_a_corrupt_record_names_its_file(tmp_path: Path) -> None:
    record = tmp_path / "images.json"
    record.write_text('{"runtime": {"tag": "x"}}')
    with pytest.raises(PipelineError, match="unreadable image record") as caught:
        read_record(record)
    assert caught.value.file == str(record) and "make images" in caught.value.fix


def _compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *options: str):
    monkeypatch.chdir(tmp_path)  # the record is read from the working directory, as `make` runs it
    output = tmp_path / "mlic.yaml"
    result = CliRunner().invoke(
        app, ["pipeline", "compile", "--output", str(output), "--params", str(PARAMS), *options]
    )
    return result, output


def test_compile_takes_the_pushed_runtime_image_from_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_record(tmp_path / ".mlic" / "images.json", [_built("runtime", pinned=PINNED_IMAGE), _built("serving")])
    result, output = _compile(tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    ir, _platform = yaml.safe_load_all(output.read_text())
    images = {executor["container"]["image"] for executor in ir["deploymentSpec"]["executors"].values()}
    assert images == {PINNED_IMAGE}
    explicit = "registry.example.com/other@sha256:" + "2" * 64
    result, output = _compile(tmp_path, monkeypatch, "--image", explicit)  # --image wins over the record
    ir, _platform = yaml.safe_load_all(output.read_text())
    assert {executor["container"]["image"] for executor in ir["deploymentSpec"]["executors"].values()} == {explicit}


def test_compile_refuses_a_recorded_image_that_was_never_pushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_record(tmp_path / ".mlic" / "images.json", [_built("runtime")])
    result, output = _compile(tmp_path, monkeypatch)
    assert result.exit_code == PipelineError.exit_code, result.output
    assert "image mlic-runtime:0.1.0 is not pinned by digest" in result.output
    assert "make images REGISTRY=" in result.output and not output.exists()
