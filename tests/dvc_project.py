"""A git + DVC copy of the project in a temp folder, for tests that run the real `dvc`.

Only what the stages hash is copied (dvc.yaml, sources, data/raw/), with params made tiny.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Parameters that make every stage take seconds.
TINY = {
    "architectures": ["baseline", "mlgcn"],
    "data": {"synthetic": {"num_images": 150, "image_size": 48}},
    "validate": {"min_positives": 1},
    "train": {"image_size": 32, "epochs": 1, "batch_size": 16},
    "models": {"baseline": {"dropout": 0.0}, "mlgcn": {"hidden_dim": 64, "pool": "max"}},
    "evaluate": {"min_map": 0.0},
}


def merge(base: dict, update: dict) -> dict:
    """`update` into `base`, section by section (a value that is not a dict replaces)."""
    for key, value in update.items():
        base[key] = merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return base


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """A command with the venv's `mlic`/`dvc` first on PATH; AssertionError with its output when it fails."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def commit(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], root)


def make_project(root: Path, params: dict) -> Path:
    """Our dvc.yaml, sources and data/raw/ in a new git + DVC repository, params.yaml = ours merged with `params`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(PROJECT / name, root / name)
    for folder in ("src", "data/raw"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    merged = merge(yaml.safe_load((PROJECT / "params.yaml").read_text()), params)
    (root / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    commit(root, "init")
    return root


def readme_block(marker: str) -> str:
    """The first ```bash block after `marker` in the README: what a walkthrough test runs as written."""
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    assert marker in text, f"the README lost its marker {marker!r}"
    return text[text.index(marker) :].split("```bash\n", 1)[1].split("```", 1)[0]


def run_script(root: Path, script: str) -> str:
    """`script` run by bash in `root` as a user would type it, stopping at the first failure; all it
    printed, each command traced (`+ ...`) before its output."""
    identity = "export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t"
    return run(["bash", "-c", f"set -euo pipefail\nexec 2>&1\n{identity}\nset -x\n{script}"], root).stdout


def ran_stages(output: str) -> list[str]:
    """The stages DVC ran, in order, once per run (an experiment sweep runs one several times)."""
    return re.findall(r"^Running stage '([^']+)'", output, flags=re.MULTILINE)
