"""train.device: the device picked is logged with its reason, and `cuda` without a GPU names the cause."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlic import device
from mlic.errors import ConfigError


@pytest.fixture
def no_usable_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine whose torch (a CUDA 13 build) cannot use a GPU; returns a folder for fake driver files."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "NVIDIA_DEVICE_NODES", (tmp_path / "nvidia0",))
    monkeypatch.setattr(device, "NVIDIA_DRIVER_VERSION_FILE", tmp_path / "version")
    return tmp_path


def plant_gpu(folder: Path, driver: str) -> None:
    (folder / "nvidia0").touch()
    (folder / "version").write_text(
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Tue Jul 11 2023\nGCC version:  gcc 12.2.0\n"
    )


def test_cuda_without_a_gpu_device_is_a_config_error_naming_it(no_usable_gpu: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        device.select_device("cuda")
    assert caught.value.field == "train.device"
    assert "/dev/nvidia0 is absent" in caught.value.message and "nvidia.com/gpu" in caught.value.message
    assert "train.device: auto" in str(caught.value.fix)


def test_cuda_with_a_driver_too_old_for_the_wheel_names_both_versions(no_usable_gpu: Path) -> None:
    plant_gpu(no_usable_gpu, "535.104.05")
    with pytest.raises(ConfigError, match=r"driver 535\.104\.05 is older than this torch's CUDA 13\.0 needs"):
        device.select_device("cuda")
    with pytest.raises(ConfigError, match=r"driver >= 580"):
        device.select_device("cuda")


def test_a_recent_driver_that_still_fails_points_at_nvidia_smi(no_usable_gpu: Path) -> None:
    plant_gpu(no_usable_gpu, "580.65.06")
    with pytest.raises(ConfigError, match=r"driver 580\.65\.06\) but torch .* cannot initialise it"):
        device.select_device("cuda")


def test_hidden_gpus_and_cpu_builds_are_named(no_usable_gpu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES='' hides every GPU" in device.why_no_gpu()
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in device.why_no_gpu()


def test_auto_logs_the_cpu_and_why_and_warns_when_a_gpu_is_unusable(
    no_usable_gpu: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="mlic.device"):
        assert device.select_device("auto").type == "cpu"
    (record,) = caplog.records
    assert record.levelname == "INFO" and "device cpu (train.device auto)" in record.message
    assert "/dev/nvidia0 is absent" in record.message
    caplog.clear()
    plant_gpu(no_usable_gpu, "535.104.05")
    with caplog.at_level("INFO", logger="mlic.device"):
        assert device.select_device("auto").type == "cpu"
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "driver 535.104.05" in record.message
    assert "train.device: cuda to make this an error" in record.message


def test_cpu_is_taken_as_asked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="mlic.device"):
        assert device.select_device("cpu").type == "cpu"
    assert "device cpu: train.device is cpu" in caplog.text
