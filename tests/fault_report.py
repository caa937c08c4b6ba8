"""The reliability table, as a pytest plugin: with MLIC_FAULTS_REPORT=<file> (`make faults-report`),
every test marked `fault(injected, survived, kept)`, wherever it lives, adds its row and outcome,
written when the session ends."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

_ROWS: list[tuple[str, str, str, str]] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    marker = item.get_closest_marker("fault")
    if marker is not None and (report.when == "call" or report.outcome != "passed"):
        params = getattr(item, "callspec", None)
        injected = marker.args[0].format(**(params.params if params else {}))
        _ROWS.append((injected, marker.args[1], marker.args[2], report.outcome))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("MLIC_FAULTS_REPORT")
    if not target or not _ROWS:
        return
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Faults injected on purpose",
        "",
        f"Command: `make faults-report` (= `MLIC_FAULTS_REPORT={target} pytest -m fault`)  ",
        f"Date: {when}",
        "",
        "| fault injected | what happened | what was kept | test |",
        "|---|---|---|---|",
        *(f"| {injected} | {survived} | {kept} | {outcome} |" for injected, survived, kept, outcome in _ROWS),
        "",
    ]
    Path(target).write_text("\n".join(lines), encoding="utf-8")
