"""The README's data-version walkthrough, run as written.

The fenced block under the README's walkthrough marker is executed by bash in a git + DVC copy of
the project whose params.yaml is tiny (tests/dvc_project.py); nothing in the block is changed. So
the README cannot drift from what the commands really do.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

import pytest
from dvc_project import TINY, make_project, ran_stages, readme_block, run_script
from PIL import Image

pytestmark = pytest.mark.slow

MARKER = "<!-- walkthrough: data versions"
#: Every stage a new data version must re-run: all of them, since everything hangs off the data.
STAGES = {"prepare", "validate", "graph", "train@baseline", "train@mlgcn", "evaluate", "package"}


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The project after the walkthrough, and everything it printed, commands traced (`+ ...`)."""
    root = make_project(tmp_path_factory.mktemp("walkthrough"), TINY)
    return root, run_script(root, readme_block(MARKER))


def test_a_new_data_version_reruns_prepare_and_everything_after_it(walked: tuple[Path, str]) -> None:
    _, output = walked
    first, second = output.split("+ git commit -qm 'benchmark v1", 1)
    assert set(ran_stages(first)) == STAGES
    assert set(ran_stages(second)) == STAGES
    assert "left out as missed labels" in first  # v1 really lacks labels; v2 has them all
    assert "left out" not in second.split("+ dvc add", 1)[0]


def test_metrics_diff_shows_both_versions_and_the_change(walked: tuple[Path, str]) -> None:
    _, output = walked
    diff = output.split("+ dvc metrics diff", 1)[1].split("\n+ ", 1)[0]
    assert re.search(r"Path\s+Metric\s+HEAD~1\s+workspace\s+Change", diff)
    number = r"-?\d+(\.\d+)?"
    for arch in ("baseline", "mlgcn"):
        assert re.search(rf"metrics/evaluation\.json\s+{arch}\.mAP\s+{number}\s+{number}\s+{number}", diff), diff
    # v2 has the missed labels back: more image labels in train
    assert re.search(rf"metrics/data\.json\s+image_labels\.train\s+{number}\s+{number}\s+\d", diff), diff
    table = output.split("+ dvc exp show", 1)[1]
    assert "baseline.mAP" in table and "mlgcn.CF1" in table


def test_report_is_offline_and_every_picture_is_a_png(walked: tuple[Path, str]) -> None:
    root, output = walked
    report = root / "reports" / "report"
    assert "report: reports/report/index.html" in output
    page = (report / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://|(src|href)=['\"]//", page), "the report refers to the network"
    sources = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(sources) >= 7  # curves, per-class AP, PR, graph, co-occurrence, predictions, attention
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        try:
            data = base64.b64decode(source.split(",", 1)[1], validate=True)
        except binascii.Error as error:
            raise AssertionError("an embedded picture is not base64") from error
        with Image.open(io.BytesIO(data)) as picture:
            picture.verify()
            assert picture.format == "PNG"
    assert "Δ mAP" in page and "HEAD~1 → HEAD" in page
    markdown = (report / "report.md").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(linked) == len(sources) and all((report / name).is_file() for name in linked)
