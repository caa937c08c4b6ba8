"""An `mlic` command run as a user runs it, to be killed with SIGKILL at a chosen moment."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

POLL_S = 0.002


def temporaries(root: Path) -> list[Path]:
    """What an interrupted write may leave: anything named like the atomic helpers' temporaries."""
    return [path for path in root.rglob("*") if ".mlic-tmp-" in path.name or ".mlic-old-" in path.name]


class MlicProcess:
    """`python -m mlic ARGS...` in `root` (params.yaml there), its output appended to `root/<log>`."""

    def __init__(self, root: Path, *args: str, log: str = "mlic.log") -> None:
        self.log_path = root / log
        self.log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlic", *args, "--params", str(root / "params.yaml"), "--root", str(root)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            ended = self.process.poll()
            assert ended is None, f"it ended (exit {ended}) before {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
            time.sleep(POLL_S)

    def kill(self) -> None:
        assert self.process.poll() is None, f"it had already ended: nothing was interrupted\n{self.output()}"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def finish(self) -> None:
        code = self.process.wait(timeout=600)
        self.log.close()
        assert code == 0, self.output()

    def output(self) -> str:
        """The end of the log, without progress bars."""
        lines = self.log_path.read_text().replace("\r", "\n").splitlines()
        return "\n".join(line for line in lines if "it/s" not in line and "s/it" not in line)[-4000:]
