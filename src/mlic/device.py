"""Which device a step computes on, and why: `train.device` (auto | cpu | cuda) for train and evaluate.

A GPU node that trains on its CPU in silence wastes hours, and "no GPU" has several causes a user
fixes in different places (the torch build, the container's GPU runtime, the node's driver), so
the choice is logged with its reason and `cuda` without a usable GPU names the cause.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from mlic.errors import ConfigError

log = logging.getLogger(__name__)

#: Device nodes the NVIDIA driver creates: a GPU is in the machine even when torch cannot use it.
NVIDIA_DEVICE_NODES = (Path("/dev/nvidiactl"), Path("/dev/nvidia0"))
#: The loaded kernel driver names its version here ("... Kernel Module  535.104.05 ...").
NVIDIA_DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
#: Oldest Linux driver each CUDA major release runs on (NVIDIA's CUDA toolkit release notes,
#: "minor version compatibility"): a torch wheel built for CUDA 13 needs a driver >= 580.
MIN_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}


def gpu_in_machine() -> bool:
    """Whether the NVIDIA driver made its device nodes here, usable by torch or not."""
    return any(node.exists() for node in NVIDIA_DEVICE_NODES)


def driver_version() -> str | None:
    """The loaded NVIDIA kernel driver's version, or None when no driver is loaded (or readable)."""
    try:
        text = NVIDIA_DRIVER_VERSION_FILE.read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return found[1] if found else None


def why_no_gpu() -> str:
    """Why torch sees no usable GPU here, in the words of the place to fix it."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build: install a CUDA build of torch"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if not gpu_in_machine():
        return (
            "no NVIDIA GPU device in this machine or container (/dev/nvidia0 is absent): on Kubernetes, "
            "request nvidia.com/gpu and run on a node with the NVIDIA container runtime"
        )
    driver = driver_version()
    cuda_major = int(torch.version.cuda.split(".")[0])
    needed = MIN_DRIVER_FOR_CUDA.get(cuda_major)
    if driver and needed and int(driver.split(".")[0]) < needed:
        return (
            f"the NVIDIA driver {driver} is older than this torch's CUDA {torch.version.cuda} needs "
            f"(driver >= {needed}): upgrade the node's driver, or install a torch built for an older CUDA"
        )
    return (
        f"an NVIDIA GPU is present (driver {driver or 'unknown'}) but torch {torch.__version__} built for "
        f"CUDA {torch.version.cuda} cannot initialise it: check `nvidia-smi` on the node"
    )


def select_device(choice: str, local_rank: int = 0) -> torch.device:
    """`cuda`: this process's GPU or a ConfigError naming why there is none; `cpu`: the CPU; `auto`:
    the GPU when torch can use it, else the CPU. The choice is logged with its reason, as a
    warning when a GPU is in the machine but unusable."""
    if torch.cuda.is_available() and choice != "cpu":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        log.info("device %s (%s): train.device is %s", device, torch.cuda.get_device_name(device), choice)
        return device
    if choice == "cpu":
        log.info("device cpu: train.device is cpu")
        return torch.device("cpu")
    reason = why_no_gpu()
    if choice == "cuda":
        raise ConfigError(
            f"CUDA was asked for but no GPU is usable: {reason}",
            field="train.device",
            fix="fix the cause named here, or set train.device: auto to run on the CPU",
        )
    unusable_gpu = gpu_in_machine()
    log.log(
        logging.WARNING if unusable_gpu else logging.INFO,
        "device cpu (train.device auto): %s%s",
        reason,
        "; set train.device: cuda to make this an error" if unusable_gpu else "",
    )
    return torch.device("cpu")
