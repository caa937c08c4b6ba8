"""`kill -9` of `mlic prepare` between the two renames of its folder swap: the previous prepared
data is moved aside and the new one not yet in place, the one moment a folder swap can lose
data. Nothing is lost: the aside copy is whole, and the next prepare puts it back, then builds."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from interrupted import temporaries

#: Runs `mlic ARGS...` and SIGKILLs itself right after `data/prepared` is renamed away, before the
#: staging folder is renamed in: os.replace is wrapped, nothing in mlic is changed.
KILLED_IN_THE_SWAP = """
import os, runpy, signal, sys
rename = os.replace
def replace(source, target):
    rename(source, target)
    if os.path.basename(os.fspath(target)).startswith(".prepared.mlic-old-"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
sys.argv = ["mlic", *sys.argv[1:]]
runpy.run_module("mlic", run_name="__main__")
"""


def prepare(root: Path, data_seed: int, *, killed_in_the_swap: bool = False) -> subprocess.CompletedProcess[str]:
    """`mlic prepare` of a small built-in benchmark; `data_seed` picks the version."""
    params = {"data": {"seed": data_seed, "synthetic": {"num_images": 60, "image_size": 32}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    command = [sys.executable, *(["-c", KILLED_IN_THE_SWAP] if killed_in_the_swap else ["-m", "mlic"])]
    arguments = ["prepare", "--params", str(root / "params.yaml"), "--root", str(root)]
    return subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=300)


def contents(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative path, as a digest of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.fault(
    "kill -9 of `mlic prepare` between the two renames of its folder swap",
    "the previous data is whole under its aside name; the next prepare puts it back (logged), then builds",
    "the previous prepared data, byte for byte; then the new version, equal to an uninterrupted run's",
)
def test_prepare_killed_inside_its_swap_loses_nothing(tmp_path: Path) -> None:
    prepared = tmp_path / "data" / "prepared"
    assert prepare(tmp_path, data_seed=1).returncode == 0
    version_2 = contents(prepared)
    assert prepare(tmp_path, data_seed=0).returncode == 0
    version_1 = contents(prepared)
    assert version_1 != version_2

    killed = prepare(tmp_path, data_seed=1, killed_in_the_swap=True)
    assert killed.returncode == -9, killed.stderr
    assert not prepared.exists()  # killed between the renames: the window this test is about
    (aside,) = prepared.parent.glob(".prepared.mlic-old-*")
    assert contents(aside) == version_1  # nothing lost

    rerun = prepare(tmp_path, data_seed=1)
    assert rerun.returncode == 0, rerun.stderr
    assert "restored" in rerun.stderr and "from an interrupted replacement" in rerun.stderr
    assert contents(prepared) == version_2
    assert temporaries(tmp_path) == []
