"""Atomic writes: modes from the umask, temporaries of killed writers removed, live ones kept."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlic.io import (
    FOREIGN_STALE_AFTER_S,
    atomic_dir,
    remove_stale_temporaries,
    write_json,
    write_text,
)


@pytest.fixture
def umask() -> Iterator[None]:
    """Run the test under umask 022 (a common default), whatever the caller's is."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Writer:
    """A separate Python process running `code` (with `target` bound), then sleeping until killed.

    It prints a line once its write is under way, so the test acts while the temporary exists.
    """

    def __init__(self, code: str, target: Path) -> None:
        script = f"import sys, time\nfrom pathlib import Path\ntarget = Path({str(target)!r})\n" + textwrap.dedent(code)
        self.process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.line = self.process.stdout.readline().strip()
        assert self.line, f"writer exited early with {self.process.wait()}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


HOLD_A_FILE_WRITE = """
from mlic.io import atomic_path
with atomic_path(target) as tmp:
    tmp.write_text("half of it")
    print(tmp.name, flush=True)
    time.sleep(120)
"""


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".mlic-" in p.name)


def test_files_and_folders_get_the_modes_the_umask_gives(tmp_path: Path, umask: None) -> None:
    metrics = write_json(tmp_path / "metrics.json", {"mAP": 1.0})
    with atomic_dir(tmp_path / "model") as staging:
        write_text(staging / "config.json", "{}")
    assert mode(metrics) == 0o644
    assert mode(tmp_path / "model") == 0o755
    assert mode(tmp_path / "model" / "config.json") == 0o644


def test_a_group_writable_umask_is_honoured_too(tmp_path: Path) -> None:
    previous = os.umask(0o002)
    try:
        report = write_text(tmp_path / "report.md", "ok")
        with atomic_dir(tmp_path / "reports") as staging:
            (staging / "a.txt").write_text("a")
    finally:
        os.umask(previous)
    assert mode(report) == 0o664
    assert mode(tmp_path / "reports") == 0o775


def test_the_temporary_of_a_killed_writer_goes_at_the_next_write_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "last.pt"
    write_text(target, "previous")
    writer = Writer(HOLD_A_FILE_WRITE, target)
    assert writer.line.startswith(".last.pt.mlic-tmp-") and writer.line.split("-")[-2] == str(writer.process.pid)
    writer.kill()
    assert temporaries(tmp_path) == [writer.line]
    assert target.read_text() == "previous"

    with caplog.at_level(logging.INFO, logger="mlic.io"):
        write_text(target, "next")
    assert temporaries(tmp_path) == []
    assert target.read_text() == "next"
    assert any(writer.line in r.getMessage() and "interrupted write" in r.getMessage() for r in caplog.records)


def test_the_temporary_of_a_live_writer_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    writer = Writer(HOLD_A_FILE_WRITE, target)
    try:
        assert remove_stale_temporaries(tmp_path) == []
        write_text(tmp_path / "other.json", "{}")  # another write into the same folder meanwhile
        assert temporaries(tmp_path) == [writer.line]
    finally:
        writer.kill()
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [writer.line]


def test_the_temporary_of_a_killed_writer_not_yet_reaped_goes_too(tmp_path: Path) -> None:
    """A killed writer whose parent has not waited for it (a zombie: DVC killed with its stage, a
    container whose PID 1 reaps nobody) still answers kill(pid, 0); it writes nothing any more."""
    target = tmp_path / "last.pt"
    writer = Writer(HOLD_A_FILE_WRITE, target)
    writer.process.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{writer.process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed writer never became a zombie"
        time.sleep(0.01)
    try:
        assert [p.name for p in remove_stale_temporaries(tmp_path)] == [writer.line]
    finally:
        writer.kill()  # reaps it


def test_a_temporary_from_another_host_goes_only_when_old(tmp_path: Path) -> None:
    fresh = tmp_path / ".last.pt.mlic-tmp-other_host-4242-0a1b2c3d"
    old = tmp_path / ".model.mlic-tmp-other_host-4242-deadbeef"
    fresh.write_text("a write under way on another machine")
    old.mkdir()
    long_ago = time.time() - FOREIGN_STALE_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    assert remove_stale_temporaries(tmp_path) == [old]
    assert fresh.exists()


def test_a_folder_swap_killed_between_its_renames_is_repaired(tmp_path: Path) -> None:
    """Killed after moving the old folder away and before moving the new one in: the old comes back."""
    target = tmp_path / "model"
    with atomic_dir(target) as staging:
        (staging / "weights.txt").write_text("previous")
    writer = Writer(
        """
        import os
        from mlic.io import atomic_dir
        rename = os.replace
        def rename_then_stop(source, destination):
            rename(source, destination)
            print("moved", flush=True)
            time.sleep(120)
        os.replace = rename_then_stop
        with atomic_dir(target) as staging:
            (staging / "weights.txt").write_text("next")
        """,
        target,
    )
    writer.kill()
    assert not target.exists()

    remove_stale_temporaries(tmp_path)
    assert (target / "weights.txt").read_text() == "previous"
    assert temporaries(tmp_path) == []


def test_a_failed_block_keeps_the_previous_output(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "reports") as staging:
        (staging / "index.html").write_text("previous")
    with pytest.raises(ValueError), atomic_dir(tmp_path / "reports") as staging:
        (staging / "index.html").write_text("half")
        raise ValueError("the step failed")
    assert (tmp_path / "reports" / "index.html").read_text() == "previous"
    assert temporaries(tmp_path) == []
