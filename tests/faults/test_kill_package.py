"""`kill -9` of `mlic package` while it builds the serving folder: the served archive stays the
previous one, and the next `mlic package` replaces it whole and leaves nothing behind."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import pytest
import yaml
from interrupted import MlicProcess, temporaries

from mlic.paths import Paths


def package(root: Path, version: str) -> MlicProcess:
    (root / "params.yaml").write_text(yaml.safe_dump({"package": {"version": version, "batch_size": 4}}))
    return MlicProcess(root, "package", log="package.log")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.fault(
    "kill -9 of `mlic package` while it builds the archive",
    "the next package run removes the staging folder (logged) and builds",
    "the served archive and its config, byte for byte, until the next build replaces them",
)
def test_package_killed_while_building_keeps_the_served_archive(chosen_model_root: Path) -> None:
    paths = Paths(chosen_model_root)
    archive = paths.model_store / "mlic.mar"
    package(paths.root, "1.0").finish()
    served = {archive: digest(archive), paths.serving_config: digest(paths.serving_config)}

    building = package(paths.root, "2.0")
    building.wait_until(lambda: any(paths.serving_dir.parent.glob(".serving.mlic-tmp-*")), "staging folder")
    time.sleep(random.uniform(0.0, 0.5))
    building.kill()
    assert {path: digest(path) for path in served} == served

    package(paths.root, "2.0").finish()
    assert temporaries(paths.root) == []
    assert digest(archive) != served[archive]  # version 2.0 now
    assert "left by an interrupted write" in (paths.root / "package.log").read_text()
