"""The metrics a run commits (metrics/ is kept by git), read at a git revision or in the workspace.

Read through `dvc.api`, which resolves a revision in git and an output in DVC's cache alike, so a
metric moved from git to DVC (or back) is still found at old revisions.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlic.errors import ConfigError, DataError
from mlic.paths import Paths

#: How the workspace (uncommitted files) is named where a revision is expected.
WORKSPACE = "workspace"


@dataclass(frozen=True)
class RevisionMetrics:
    """One version of a run's committed figures."""

    rev: str
    #: metrics/evaluation.json: arch → test metrics and val_mAP.
    per_arch: dict[str, dict[str, float]]
    #: metrics/per_class.csv: arch → label → test AP (labels with no test positive are left out).
    per_class_ap: dict[str, dict[str, float]]
    #: metrics/data.json: images and labels per split (empty when the revision has none).
    data: dict[str, Any]
    #: dvclive's validation mAP per epoch, by arch (an arch without its curve is left out).
    val_curves: dict[str, list[float]] = field(default_factory=dict)


def _read_text(paths: Paths, relative: Path, rev: str) -> str:
    """A committed file's text at `rev` (the workspace file itself for WORKSPACE)."""
    if rev == WORKSPACE:
        target = paths.root / relative
        if not target.is_file():
            raise DataError(
                "no such file in the workspace", file=target, fix="run `dvc repro` (or `mlic evaluate`) first"
            )
        return target.read_text(encoding="utf-8")
    import dvc.api
    from dvc.exceptions import PathMissingError
    from dvc.scm import RevError

    try:
        return dvc.api.read(relative.as_posix(), repo=str(paths.root), rev=rev, encoding="utf-8")
    except RevError:
        raise ConfigError(
            f"no revision {rev!r} in the git repository {paths.root.resolve()}",
            field="--rev",
            fix="give a commit, branch or tag that exists (`git log --oneline`), or leave --rev out for the workspace",
        ) from None
    except PathMissingError:
        raise DataError(
            f"revision {rev!r} has no {relative.as_posix()}",
            file=relative,
            fix="commit metrics/ with each run (`git add dvc.lock metrics && git commit`), then compare those commits",
        ) from None


def _per_class_ap(text: str) -> dict[str, dict[str, float]]:
    """per_class.csv's AP_<arch> columns, turned arch-major; empty cells (no positive) left out."""
    per_arch: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        for column, value in row.items():
            if column.startswith("AP_") and value:
                per_arch.setdefault(column.removeprefix("AP_"), {})[row["label"]] = float(value)
    return per_arch


def read_revision(paths: Paths, rev: str = WORKSPACE) -> RevisionMetrics:
    """The evaluation, per-class and data figures of one revision."""
    root = paths.root

    def relative(path: Path) -> Path:
        return path.relative_to(root)

    per_arch = json.loads(_read_text(paths, relative(paths.evaluation_metrics), rev))
    per_class = _per_class_ap(_read_text(paths, relative(paths.per_class_metrics), rev))
    try:
        data = json.loads(_read_text(paths, relative(paths.data_metrics), rev))
    except DataError:  # data counts are a bonus: a revision from before they existed still compares
        data = {}
    curves = {}
    for arch in per_arch:
        try:
            curves[arch] = _tsv_column(_read_text(paths, relative(val_curve_file(paths, arch)), rev), "mAP")
        except DataError:  # likewise the curves: a model trained by other means has none
            continue
    return RevisionMetrics(rev, per_arch, per_class, data, curves)


def val_curve_file(paths: Paths, arch: str) -> Path:
    """Where dvclive keeps a model's validation mAP per epoch (`val/mAP`, one row a step)."""
    return paths.train_logs(arch) / "plots" / "metrics" / "val" / "mAP.tsv"


def _tsv_column(text: str, column: str) -> list[float]:
    return [float(row[column]) for row in csv.DictReader(io.StringIO(text), delimiter="\t")]
