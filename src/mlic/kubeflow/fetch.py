"""DVC-versioned data from a git repository, pinned to a commit.

Two steps, because of caching: `resolve_revision` turns a branch or tag (which moves) into the
commit it points at now, and is never cached; `fetch` downloads the data of one commit, which never
changes, so it is cached on that commit — and every task downstream stays cached until the data
really change. `fetch` runs `dvc get`, which clones the repo at the commit and pulls the path
from the DVC remote configured in the repo (`.dvc/config`), with the credentials the environment
gives (docs/operations.md).

Credentials belong in that environment (a Kubernetes Secret), not in the URL; a URL that carries
them anyway (`https://user:token@host/...`) is shown as `https://***@host/...` in every log
line, error and artifact metadata (`mlic.urls.redact`) — git and dvc print the URL back in their errors.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from mlic.errors import PipelineError
from mlic.urls import redact

log = logging.getLogger(__name__)

COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
#: Seconds a git or dvc call may take before we call the remote unreachable.
GIT_TIMEOUT_S = 120
DVC_TIMEOUT_S = 6 * 3600


def _run(command: list[str], timeout: int, what: str, fix: str) -> str:
    """Run a tool quietly; a failure becomes a PipelineError carrying the tool's own message (redacted)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise PipelineError(redact(f"{what} timed out after {timeout} s"), fix=fix) from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        message = f"{what} failed: {' / '.join(detail[-3:]) or f'exit {done.returncode}'}"
        raise PipelineError(redact(message), fix=fix)
    return done.stdout


def resolve_revision(repo_url: str, rev: str) -> str:
    """The commit `rev` (branch, tag, full SHA, or "" for the default branch) points at now.

    An empty `repo_url` means the built-in synthetic data: there is nothing to resolve.
    """
    if not repo_url:
        return ""
    if COMMIT_PATTERN.match(rev):
        return rev
    # A peeled annotated tag (`^{}`) names the commit; the tag ref itself names the tag object.
    wanted = [f"refs/tags/{rev}^{{}}", f"refs/tags/{rev}", f"refs/heads/{rev}", rev] if rev else ["HEAD"]
    listing = _run(
        ["git", "ls-remote", repo_url],
        GIT_TIMEOUT_S,
        f"git ls-remote {repo_url}",
        fix="check data_repo_url and that this pod can reach the repo (credentials: docs/operations.md)",
    )
    refs = {ref: sha for sha, ref in (line.split("\t", 1) for line in listing.splitlines() if "\t" in line)}
    for ref in wanted:
        if ref in refs:
            log.info("data revision %r of %s is commit %s", rev or "HEAD", redact(repo_url), refs[ref])
            return refs[ref]
    raise PipelineError(
        f"revision '{rev}' not found in {redact(repo_url)}",
        field="data_rev",
        fix="give a branch, a tag or a full 40-character commit SHA",
    )


def fetch(repo_url: str, commit: str, path: str, target: Path) -> Path:
    """Download `path` of the repo at `commit` to `target / path` (the project-layout path)."""
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise PipelineError(
            f"'{path}' is not a path inside the repository",
            field="data_path",
            fix="give a relative path such as data/raw",
        )
    destination = target / path
    destination.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [sys.executable, "-m", "dvc", "get", repo_url, path, "--rev", commit, "--out", str(destination)],
        DVC_TIMEOUT_S,
        f"dvc get {repo_url} {path} --rev {commit}",
        fix="check data_path is tracked by DVC in that commit and the repo's DVC remote is reachable "
        "with the credentials given to the pod (docs/operations.md)",
    )
    log.info("fetched %s@%s:%s → %s", redact(repo_url), commit[:12], path, destination)
    return destination
