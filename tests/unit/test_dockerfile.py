"""The Dockerfile: hadolint for real, and the structure the images rely on (no Docker engine here)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = Path(__file__).resolve().parents[2]
DOCKERFILE = PROJECT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def stages() -> dict[str, list[str]]:
    """Instructions (continuation lines joined, comments dropped) of each named build stage."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = found.setdefault(match.group(1), [])
        current.append(line)
    return found


def lineage(target: str) -> list[str]:
    """A stage's instructions after those of the stages it is built FROM (what its image holds)."""
    instructions = stages()[target]
    parent = instructions[0].split()[1]
    return (lineage(parent) if parent in stages() else []) + instructions


def test_hadolint_is_clean() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("target", ["runtime", "serving"])
def test_targets_run_as_an_unprivileged_user_with_pinned_packages(target: str) -> None:
    instructions = lineage(target)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    copied = " ".join(line for line in instructions if line.startswith("COPY --from=builder"))
    assert "/opt/venv" in copied and "/opt/mlic" not in copied  # the installed package, not the source tree
    builder = " ".join(stages()["builder"])
    assert "-c constraints.txt" in builder and 'pip install --no-cache-dir -c constraints.txt ".[remotes]"' in builder


def test_both_images_share_the_installed_environment_layer() -> None:
    """One `COPY --from=builder /opt/venv` both targets build FROM: 6 GB stored once, not twice."""
    assert stages()["runtime"][0].split()[1] == stages()["serving"][0].split()[1] == "installed"
    assert [line for line in stages()["installed"] if line.startswith("COPY")] == [
        "COPY --from=builder /opt/venv /opt/venv"
    ]
    assert not any(line.startswith("COPY --from=builder") for line in stages()["runtime"] + stages()["serving"])


def test_serving_has_java_17_torchserve_and_a_healthcheck() -> None:
    serving = " ".join(stages()["serving"])
    assert "openjdk-17-jre-headless" in serving
    assert "HEALTHCHECK" in serving and '"-m", "mlic.serving.probe"' in serving  # a real prediction, not /ping
    assert "torchserve" in serving and "/mnt/models/config/config.properties" in serving


def test_runtime_can_stage_kfp_artifacts_as_non_root() -> None:
    runtime = " ".join(stages()["runtime"])
    assert "install -d -m 1777 /gcs /minio /s3" in runtime


def test_constraints_pin_every_dependency() -> None:
    pins = {
        canonicalize_name(line.split("==")[0])
        for line in (PROJECT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["dependencies"] + [dep for deps in project["optional-dependencies"].values() for dep in deps]
    missing = {canonicalize_name(Requirement(dep).name) for dep in declared} - pins
    assert not missing, f"constraints.txt lacks pins for {sorted(missing)}"


def test_build_context_is_an_allow_list() -> None:
    text = (PROJECT / ".dockerignore").read_text(encoding="utf-8")
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    copied = {
        source
        for instruction in stages()["builder"]
        if instruction.startswith("COPY ")
        for source in instruction.split()[1:-1]
    }
    assert copied and copied <= allowed, copied - allowed
