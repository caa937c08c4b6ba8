"""Atomic writes: a killed step leaves either the old output or the new one, never half of one.

Every write goes to a temporary sibling named `.<name>.mlic-tmp-<host>-<pid>-<random>` and is
renamed onto its target only when complete. The host and pid in the name tell a temporary of a
live writer from one a killed process left behind; the next write into the same folder removes
the latter. Temporaries are created with the modes the umask gives (files 0666 & ~umask,
folders 0777 & ~umask), so outputs on a shared volume stay readable by the group when the umask
allows it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlic.errors import DataError, StorageError

log = logging.getLogger(__name__)

#: A temporary of another host cannot be checked for a live owner; past this age it is stale.
FOREIGN_STALE_AFTER_S = 24 * 3600

_OWNED = re.compile(r"^\.(?P<name>.+)\.mlic-(?P<kind>tmp|old)-(?P<host>.+)-(?P<pid>\d+)-(?P<rand>[0-9a-f]+)$")
_FULL = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}


def _host() -> str:
    """This machine's name as it appears in temporary names (no separators that could confuse parsing)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "localhost"


def _owned_name(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.mlic-{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(4)}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Killed but not yet waited for by its parent (a stage killed with `dvc repro`, whose orphan
    waits on a PID 1 that may never reap it): it answers kill(pid, 0) and will write nothing more.
    Read from /proc where there is one; elsewhere a zombie counts as alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # the state follows the parenthesised command


def _is_stale(entry: Path, host: str, pid: int) -> bool:
    """Left by a process that no longer runs: a dead pid on this host, or old enough elsewhere."""
    if host == _host():
        return not _process_alive(pid)
    try:
        return time.time() - entry.lstat().st_mtime > FOREIGN_STALE_AFTER_S
    except FileNotFoundError:
        return False


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _stale_entries(folder: Path) -> list[tuple[Path, re.Match[str]]]:
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _OWNED.match(entry.name)
        if match and _is_stale(entry, match["host"], int(match["pid"])):
            found.append((entry, match))
    return found


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete what killed writers left in `folder` (never a live writer's temporary); say so in the log.

    A folder swap interrupted between its two renames leaves the target missing and the previous
    version under an `old` name: that one is put back instead of deleted.
    """
    folder = Path(folder)
    removed = []
    for entry, match in sorted(_stale_entries(folder), key=lambda item: item[0].name):
        target = folder / match["name"]
        if match["kind"] == "old" and not target.exists():
            with contextlib.suppress(FileNotFoundError):
                os.replace(entry, target)
                log.warning("restored %s from an interrupted replacement (%s)", target, entry.name)
                continue
        _remove(entry)
        log.info("removed %s, left by an interrupted write (pid %s on %s)", entry, match["pid"], match["host"])
        removed.append(entry)
    return removed


def _full_disk(exc: BaseException | None) -> int | None:
    """ENOSPC or EDQUOT anywhere in the chain: writers such as torch.save raise their own error
    from the OSError (its zip writer's RuntimeError), which hides the cause."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def _storage_errors(target: Path) -> Iterator[None]:
    """A full disk or quota becomes a StorageError naming the output; other errors pass through."""
    try:
        yield
    except Exception as exc:
        code = _full_disk(exc)
        if code is None:
            raise
        raise StorageError(
            f"{_FULL[code]} while writing it; the previous version is unchanged",
            file=target,
            fix=f"free space on the volume holding {target.parent}, then run the step again",
        ) from exc


def _fsync(path: Path) -> None:
    """Flush a file to the device before the rename, so a rename never lands before the data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temporary exists (empty) when yielded, with the umask's mode; writers open it in place.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    tmp = _owned_name(target, "tmp")
    try:
        with _storage_errors(target):
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            yield tmp
            _fsync(tmp)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(target: str | Path, payload: Any) -> Path:
    """Write JSON atomically, pretty-printed so diffs of small metric files read well in git."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return Path(target)


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a directory in a sibling temp dir and swap it in whole when the block succeeds.

    Used for step outputs that are folders (prepared data, a model directory): readers never see
    a folder with some files new and some old. The swap is two renames (target away, staging in);
    a kill between them is repaired by the next write into the parent folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    staging = _owned_name(target, "tmp")
    old = _owned_name(target, "old")
    try:
        with _storage_errors(target):
            os.mkdir(staging, 0o777)
            yield staging
            if target.exists():
                os.replace(target, old)
            try:
                os.replace(staging, target)
            except OSError:
                if old.exists():
                    os.replace(old, target)  # put the previous version back before the error travels on
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or broken file into a DataError that names it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", file=path, fix="check the path, or run the step that writes it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} is not valid JSON ({exc})", file=path, fix="re-export or repair the file") from exc
