"""What each step reads from params.yaml: declared once, here.

DVC re-runs a stage when a key in its `params:` changes, and a Kubeflow task's cache key is the
params it is handed; a key a step reads but its stage does not declare is a change that silently
re-runs nothing. So dvc.yaml's `params:` and the Kubeflow tasks' params are both checked against
this table (tests/unit/test_step_params.py), and a test runs every step while recording the keys
the config hands out, failing on any read that is not declared here.

A key covers everything under it (`data` covers `data.split.val`); `{arch}` stands for the
architecture a train stage trains.
"""

from __future__ import annotations

STEP_PARAMS: dict[str, tuple[str, ...]] = {
    "prepare": ("data",),
    "validate": ("validate", "data.max_image_pixels", "data.path"),
    "graph": ("graph",),
    "train": ("train", "models.{arch}", "data.max_image_pixels"),
    "evaluate": (
        "architectures",
        "evaluate",
        "train.batch_size",
        "train.num_workers",
        "train.device",
        "train.amp",
        "data.max_image_pixels",
    ),
    "package": ("package", "data.max_image_pixels"),
}


def step_params(step: str, arch: str | None = None) -> tuple[str, ...]:
    """The dotted keys `step` reads (a train step: for `arch`)."""
    keys = STEP_PARAMS[step]
    return tuple(key.format(arch=arch) for key in keys) if arch is not None else keys


def declares(keys: tuple[str, ...], read: str) -> bool:
    """Whether a read of dotted key `read` is covered by one of `keys`."""
    return any(read == key or read.startswith(f"{key}.") for key in keys)


def subset(full: dict, keys: tuple[str, ...]) -> dict:
    """The part of a params dictionary under `keys`, nested as in params.yaml."""
    picked: dict = {}
    for key in keys:
        *sections, leaf = key.split(".")
        source, target = full, picked
        for section in sections:
            source, target = source[section], target.setdefault(section, {})
        target[leaf] = source[leaf]
    return picked
