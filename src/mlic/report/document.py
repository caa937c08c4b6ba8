"""The report's content (tables and pictures in sections) and its two renderings.

Markdown for reading in a repository or a terminal, with the PNGs written beside it; HTML as one
file with the PNGs embedded as data URIs, so it can be mailed or attached to a ticket and still
show everything. Neither refers to anything on the network.
"""

from __future__ import annotations

import base64
import html
import math
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mlic.errors import ConfigError
from mlic.evaluation import plots
from mlic.evaluation.gate import VAL_MAP, decide
from mlic.evaluation.tables import Table, metrics_rows
from mlic.io import atomic_dir
from mlic.paths import Paths
from mlic.report.revisions import WORKSPACE, RevisionMetrics

#: The headline metrics a comparison shows per architecture.
COMPARED = ("mAP", "CF1", "OF1", VAL_MAP)


@dataclass(frozen=True)
class Picture:
    title: str
    path: Path
    #: Its name beside report.md when `path`'s own would not do (a picture drawn for the page).
    name: str | None = None

    @property
    def file_name(self) -> str:
        """The plots keep their names; others are prefixed by their folder (the graph's graph.png)."""
        if self.name is not None:
            return self.name
        folder = self.path.parent.name
        return self.path.name if folder == "plots" else f"{folder}_{self.path.name}"


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    pictures: list[Picture] = field(default_factory=list)


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    pictures: int
    missing: list[Path]

    def summary(self) -> str:
        lines = [f"report: {self.html} (one file, pictures embedded) and {self.markdown} ({self.pictures} PNGs beside)"]
        if self.missing:
            lines.append("not drawn yet (run `dvc repro`): " + ", ".join(str(path) for path in self.missing))
        return "\n".join(lines)


def _number(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _delta(before: float | None, after: float | None) -> str:
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return "–"
    return f"{after - before:+.1f}"


def comparison_tables(before: RevisionMetrics, after: RevisionMetrics) -> list[Table]:
    """Per architecture: the headline metrics at both revisions and their change; per class: the
    change in test AP of every architecture present at both; per split: the data counts."""
    archs = [*after.per_arch, *(arch for arch in before.per_arch if arch not in after.per_arch)]
    headers = ["arch"]
    for metric in COMPARED:
        name = "val mAP" if metric == VAL_MAP else metric
        headers += [f"{name} {before.rev}", f"{name} {after.rev}", f"Δ {name}"]
    rows = []
    for arch in archs:
        old, new = before.per_arch.get(arch, {}), after.per_arch.get(arch, {})
        row = [arch]
        for metric in COMPARED:
            row += [_number(old.get(metric)), _number(new.get(metric)), _delta(old.get(metric), new.get(metric))]
        rows.append(row)
    tables = [Table(headers, rows)]

    shared = [arch for arch in after.per_class_ap if arch in before.per_class_ap]
    labels = list(dict.fromkeys(label for arch in shared for label in after.per_class_ap[arch]))
    if shared and labels:
        per_class = [
            [label, *(_delta(before.per_class_ap[a].get(label), after.per_class_ap[a].get(label)) for a in shared)]
            for label in labels
        ]
        tables.append(Table(["label", *(f"Δ AP {arch}" for arch in shared)], per_class))

    if before.data and after.data:
        splits = list(after.data.get("images", {}))
        counts = [
            [
                split,
                *(str(side.data.get("images", {}).get(split, "–")) for side in (before, after)),
                *(str(side.data.get("image_labels", {}).get(split, "–")) for side in (before, after)),
            ]
            for split in splits
        ]
        headers = [
            "split",
            f"images {before.rev}",
            f"images {after.rev}",
            f"labels {before.rev}",
            f"labels {after.rev}",
        ]
        tables.append(Table(headers, counts))
    return tables


def pictures(paths: Paths) -> list[Picture]:
    """The run's pictures, in reading order: how the models compare, how they trained, where they
    err, what prior they were given, what they decide and where they look."""
    plots = paths.plots_dir
    named = [
        Picture("Test metrics by architecture", plots / "map_by_arch.png"),
        Picture("Training curves (loss, validation mAP per epoch)", plots / "training_curves.png"),
        Picture("Per-class average precision", plots / "per_class_ap.png"),
        Picture("Precision-recall of the chosen model", plots / "precision_recall.png"),
        Picture("The label graph the models were given", paths.graph_dir / "graph.png"),
        Picture("Label co-occurrence: true against the chosen model's decisions", plots / "cooccurrence.png"),
        Picture("Test images with the chosen model's labels", plots / "predictions.png"),
    ]
    attention = sorted(plots.glob("attention_*.png")) if plots.is_dir() else []
    return named + [Picture(f"Label attention: {path.stem.removeprefix('attention_')}", path) for path in attention]


def sections(
    paths: Paths, current: RevisionMetrics, before: RevisionMetrics | None, compared: list[Picture]
) -> list[Section]:
    """The page: the models now; with an earlier revision, what changed (tables and `compared`,
    the pictures drawn for the comparison); then the workspace's pictures."""
    chosen = decide(current.per_arch, 0.0).best_arch if current.per_arch else None
    models = Section(
        f"Models ({current.rev})",
        "Percent. val mAP chooses the model to ship (★); every other column is the test split.",
        [metrics_rows(current.per_arch, chosen)],
    )
    result = [models]
    if before is not None:
        result.append(
            Section(
                f"What changed: {before.rev} → {current.rev}",
                "Per architecture, per class (test AP) and per split. Δ is the later revision minus the earlier.",
                comparison_tables(before, current),
                compared,
            )
        )
    result.append(Section("Pictures (workspace)", pictures=pictures(paths)))
    return result


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th:first-child,td:first-child{text-align:left}"
    "img{max-width:100%;border:1px solid #eee}"
)


def render_html(title: str, content: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    for section in content:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        parts += [_html_table(table) for table in section.tables]
        for picture in section.pictures:
            if picture.path.is_file():
                encoded = base64.b64encode(picture.path.read_bytes()).decode("ascii")
                alt = html.escape(picture.title)
                parts.append(f"<h3>{alt}</h3><img alt='{alt}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(title: str, content: list[Section]) -> str:
    parts = [f"# {title}"]
    for section in content:
        parts.append(f"## {section.title}")
        if section.text:
            parts.append(section.text)
        parts += [table.markdown() for table in section.tables]
        parts += [
            f"### {picture.title}\n\n![{picture.title}]({picture.file_name})"
            for picture in section.pictures
            if picture.path.is_file()
        ]
    return "\n\n".join(parts) + "\n"


def _draw_comparison(before: RevisionMetrics, after: RevisionMetrics, folder: Path) -> list[Picture]:
    """Both revisions' validation curves in one picture, drawn into the page's folder (it exists
    for this comparison only); none when neither revision has curves."""
    if not (before.val_curves or after.val_curves):
        return []
    name = "curves_by_revision.png"
    picture = Picture("Validation mAP per epoch, both revisions", folder / name, name)
    plots.curves_by_revision({before.rev: before.val_curves, after.rev: after.val_curves}, picture.path)
    return [picture]


def write_report(paths: Paths, current: RevisionMetrics, before: RevisionMetrics | None, output: Path) -> ReportResult:
    """Both renderings into `output/` (index.html, report.md and the PNGs), swapped in whole."""
    revisions = current.rev if before is None else f"{before.rev} → {current.rev}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"mlic report: {paths.root.resolve().name}, {revisions} ({stamp})"
    with atomic_dir(output) as staging:
        compared = [] if before is None else _draw_comparison(before, current, staging)
        content = sections(paths, current, before, compared)
        shown = [picture for section in content for picture in section.pictures]
        drawn = [picture for picture in shown if picture.path.is_file()]
        missing = [picture.path for picture in shown if not picture.path.is_file()]
        (staging / "index.html").write_text(render_html(title, content), encoding="utf-8")
        (staging / "report.md").write_text(render_markdown(title, content), encoding="utf-8")
        for picture in drawn:
            if picture.path.parent != staging:
                shutil.copyfile(picture.path, staging / picture.file_name)
    return ReportResult(output / "index.html", output / "report.md", len(drawn), missing)


def revision_pair(revs: list[str]) -> tuple[str | None, str]:
    """`--rev` given 0, 1 or 2 times: the workspace alone; that revision against the workspace;
    the first against the second."""
    if len(revs) == 0:
        return None, WORKSPACE
    if len(revs) == 1:
        return revs[0], WORKSPACE
    if len(revs) == 2:
        return revs[0], revs[1]
    raise ConfigError(
        f"{len(revs)} revisions given; a report compares two at most", field="--rev", fix="give --rev once or twice"
    )
