"""`mlic report`: figures read at git revisions, their changes, and an offline page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dvc_project import commit, run
from PIL import Image

from mlic.errors import ConfigError, DataError
from mlic.evaluation.tables import Table
from mlic.paths import Paths
from mlic.report.document import comparison_tables, revision_pair, write_report
from mlic.report.revisions import WORKSPACE, RevisionMetrics, read_revision, val_curve_file

PER_CLASS = (
    "label,test_positives,AP_baseline,AP_sgfn,threshold_baseline,threshold_sgfn\n"
    "cup,4,50.00,70.00,0.5,0.5\n"
    "fork,0,,,0.5,0.5\n"  # no test positive: no AP
)


def write_run(root: Path, maps: dict[str, float], per_class: str = PER_CLASS) -> Paths:
    paths = Paths(root)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    metrics = {arch: {"mAP": value, "CF1": 40.0, "OF1": 45.0, "val_mAP": value + 1} for arch, value in maps.items()}
    paths.evaluation_metrics.write_text(json.dumps(metrics))
    paths.per_class_metrics.write_text(per_class)
    paths.data_metrics.write_text(json.dumps({"images": {"train": 10, "test": 4}, "image_labels": {"train": 20}}))
    for arch, value in maps.items():  # dvclive's layout: a step and a value per epoch
        curve = val_curve_file(paths, arch)
        curve.parent.mkdir(parents=True, exist_ok=True)
        curve.write_text(f"step\tmAP\n0\t{value / 2}\n1\t{value}\n")
    return paths


def rows(table: Table) -> dict[str, dict[str, str]]:
    return {row[0]: dict(zip(table.headers, row, strict=True)) for row in table.rows}


def test_the_workspace_figures_are_read_per_architecture_and_class(tmp_path: Path) -> None:
    current = read_revision(write_run(tmp_path, {"baseline": 50.0, "sgfn": 70.0}))
    assert current.rev == WORKSPACE and current.per_arch["sgfn"]["mAP"] == 70.0
    assert current.per_class_ap == {"baseline": {"cup": 50.0}, "sgfn": {"cup": 70.0}}  # no positive: no AP


def test_changes_are_the_later_revision_minus_the_earlier_and_missing_models_show_a_dash() -> None:
    data = {"images": {"train": 10}, "image_labels": {"train": 20}}
    before = RevisionMetrics("v1", {"baseline": {"mAP": 50.0, "val_mAP": 51.0}}, {"baseline": {"cup": 40.0}}, data)
    after = RevisionMetrics(
        "v2",
        {"baseline": {"mAP": 52.5, "val_mAP": 50.0}, "sgfn": {"mAP": 70.0}},
        {"baseline": {"cup": 45.5}, "sgfn": {"cup": 80.0}},
        {"images": {"train": 12}, "image_labels": {"train": 30}},
    )
    models, per_class, splits = comparison_tables(before, after)
    assert rows(models)["baseline"]["Δ mAP"] == "+2.5" and rows(models)["baseline"]["Δ val mAP"] == "-1.0"
    assert rows(models)["sgfn"]["mAP v1"] == "–" and rows(models)["sgfn"]["Δ mAP"] == "–"
    assert per_class.headers == ["label", "Δ AP baseline"]  # only architectures present at both
    assert rows(per_class)["cup"]["Δ AP baseline"] == "+5.5"
    assert rows(splits)["train"] == {
        "split": "train",
        "images v1": "10",
        "images v2": "12",
        "labels v1": "20",
        "labels v2": "30",
    }


def test_revisions_are_read_from_git_and_a_bad_one_is_named(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    commit(root, "no metrics yet")
    paths = write_run(root, {"baseline": 50.0})
    commit(root, "v1")
    write_run(root, {"baseline": 55.0})
    committed, workspace = read_revision(paths, "HEAD"), read_revision(paths)
    assert committed.per_arch["baseline"]["mAP"] == 50.0 and committed.val_curves == {"baseline": [25.0, 50.0]}
    assert workspace.per_arch["baseline"]["mAP"] == 55.0 and workspace.val_curves == {"baseline": [27.5, 55.0]}
    # both revisions' curves are drawn for the comparison, beside the page and inside it
    result = write_report(paths, workspace, committed, paths.report_dir)
    assert (paths.report_dir / "curves_by_revision.png").is_file()
    assert "](curves_by_revision.png)" in result.markdown.read_text(encoding="utf-8")
    assert "Validation mAP per epoch, both revisions" in result.html.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="no revision 'v9'") as unknown:
        read_revision(paths, "v9")
    assert unknown.value.field == "--rev"
    with pytest.raises(DataError, match=r"revision 'HEAD~1' has no metrics/evaluation\.json") as missing:
        read_revision(paths, "HEAD~1")
    assert "git add dvc.lock metrics" in (missing.value.fix or "")


def test_revision_pairs() -> None:
    assert revision_pair([]) == (None, WORKSPACE)
    assert revision_pair(["HEAD~1"]) == ("HEAD~1", WORKSPACE)
    assert revision_pair(["a", "b"]) == ("a", "b")
    with pytest.raises(ConfigError, match="two at most"):
        revision_pair(["a", "b", "c"])


def test_the_page_embeds_its_pictures_and_names_the_missing_ones(tmp_path: Path) -> None:
    paths = write_run(tmp_path, {"baseline": 50.0, "sgfn": 70.0})
    paths.plots_dir.mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(paths.plots_dir / "map_by_arch.png")
    Image.new("RGB", (8, 8), "blue").save(paths.plots_dir / "attention_sgfn.png")
    current = read_revision(paths)
    result = write_report(paths, current, None, paths.report_dir)
    page = result.html.read_text(encoding="utf-8")
    assert result.pictures == 2 and page.count("src='data:image/png;base64,") == 2
    assert "Label attention: sgfn" in page and "sgfn ★" in page  # chosen on val mAP
    assert not re.search(r"https?://", page)
    assert paths.plots_dir / "predictions.png" in result.missing and "run `dvc repro`" in result.summary()
    assert (
        paths.report_dir / "attention_sgfn.png"
    ).is_file() and "](attention_sgfn.png)" in result.markdown.read_text()
