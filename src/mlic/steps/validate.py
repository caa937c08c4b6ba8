"""validate step: a great-expectations suite over the prepared data, before anything trains on it.

Three tables are built from `data/prepared/` with pandas and checked by GX 1.x:

* **images** — one row per image: split, id, file, annotated width/height, number of labels, and
  what opening the file through `mlic.data.images` found (decode error, real width/height as the
  model will see them, after EXIF orientation; a hash of the decoded pixels).
* **annotations** — one row per image-label (the exploded label lists).
* **labels** — one row per category with its image count per split.

Expectations: ids unique; every file exists and decodes; width/height positive and equal to the
file's; every label in the category set; no unlabelled image (unless `validate.allow_unlabeled`);
at least `validate.min_positives` training images per label; no identical image (same decoded
pixels) in two splits.

Outputs: `reports/validation/` (rebuilt whole) holds `validation_result.json` (the GX results)
and GX **data docs** from a file-backed context with `UpdateDataDocsAction`
(`gx/uncommitted/data_docs/local_site/index.html`; static HTML, readable offline — only its
stylesheets come from a CDN). `metrics/data.json` (counts per split) and
`metrics/label_frequency.csv` (images per label and split) are written only when every expectation
passes, so `dvc repro` stops here; any stale one is removed
first. A failure raises `ValidationFailed` with a short table (file, field, value, rule) and the
report path.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
from tqdm import tqdm

from mlic.config import Config
from mlic.data.canonical import LabelSet, PreparedSplit, load_labels, load_split
from mlic.data.images import decode_image
from mlic.data.split import SPLIT_NAMES
from mlic.errors import DataError, ValidationFailed
from mlic.io import atomic_dir, write_json, write_text
from mlic.paths import Paths

log = logging.getLogger(__name__)

RESULT_FILE = "validation_result.json"
#: The data-docs entry page, relative to the reports folder.
DATA_DOCS_INDEX = Path("gx/uncommitted/data_docs/local_site/index.html")
#: Rows of the failure table shown in the error; the report has them all.
MAX_FAILURE_ROWS = 20
_MAX_CELL = 70
#: Columns that identify a row in every table (GX returns them with each unexpected row).
_ROW_ID = ["file", "item"]
#: The tables, in the order their failures are listed.
REPORT_ORDER = ("images", "annotations", "labels")


@dataclass
class Tables:
    images: pd.DataFrame
    annotations: pd.DataFrame
    labels: pd.DataFrame

    def named(self) -> dict[str, pd.DataFrame]:
        return {"images": self.images, "annotations": self.annotations, "labels": self.labels}


@dataclass(frozen=True)
class Failure:
    file: str
    field: str
    value: str
    rule: str


@dataclass
class ValidateResult:
    split_sizes: dict[str, int]
    num_labels: int
    num_annotations: int
    num_expectations: int
    report: Path
    result_file: Path
    metrics_file: Path
    seconds: float

    def summary(self) -> str:
        sizes = ", ".join(f"{split} {count}" for split, count in self.split_sizes.items())
        return (
            f"validation passed: {self.num_expectations} expectations on images {sizes} "
            f"({self.num_annotations} image labels, {self.num_labels} categories) in {self.seconds:.1f} s\n"
            f"  metrics: {self.metrics_file}\n  report:  {self.report}"
        )


def _shown(path: Path) -> str:
    """Paths relative to the working directory when inside it: shorter tables, same meaning."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _inspect(path: Path, max_pixels: int) -> tuple[str | None, int | None, int | None, str | None]:
    """(decode error, real width, real height, pixel hash) of one image file."""
    try:
        image = decode_image(path, name=str(path), max_pixels=max_pixels)
    except DataError as exc:
        return exc.message, None, None, None
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.width}x{image.height}".encode())
    return None, image.width, image.height, digest.hexdigest()


def _inspect_all(paths: list[Path], max_pixels: int) -> list[tuple[str | None, int | None, int | None, str | None]]:
    """Decode every image; threads, since PIL releases the GIL while decoding."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        jobs = pool.map(lambda path: _inspect(path, max_pixels), paths)
        return list(tqdm(jobs, total=len(paths), desc="checking images", unit="img", leave=False))


def _same_content_elsewhere(images: pd.DataFrame) -> list[str | None]:
    """For each image, the files in *other* splits with identical pixels (None when there are none)."""
    where: dict[str, list[tuple[str, str]]] = {}
    for split, file, digest in zip(images["split"], images["file"], images["content_hash"], strict=True):
        if isinstance(digest, str):  # undecodable images have no hash (NaN in the frame)
            where.setdefault(digest, []).append((split, file))
    found = []
    for split, digest in zip(images["split"], images["content_hash"], strict=True):
        others = [f"{other_split}:{file}" for other_split, file in where.get(digest, []) if other_split != split]
        found.append(", ".join(others) if others else None)
    return found


def label_source(config: Config, paths: Paths) -> Path:
    """The file a label-count failure points at: the user's training annotations (`data.path`,
    its `train` entry when given per split), where labels are added; the prepared split otherwise."""
    source = config.data.path
    if isinstance(source, dict):
        source = source.get("train")
    return paths.root / source if source else paths.split_file("train")


def build_tables(
    labels: LabelSet, splits: dict[str, PreparedSplit], split_files: dict[str, Path], max_pixels: int, label_file: Path
) -> Tables:
    image_rows: list[dict[str, Any]] = []
    annotation_rows: list[dict[str, Any]] = []
    image_paths: list[Path] = []
    for split, prepared in splits.items():
        for record in prepared.records:
            image_path = prepared.image_path(record)
            image_paths.append(image_path)
            image_rows.append(
                {
                    "split": split,
                    "image_id": record.id,
                    "file": _shown(image_path),
                    "item": f"image {record.id} ({split})",
                    "width": record.width,
                    "height": record.height,
                    "num_labels": len(record.labels),
                }
            )
            annotation_rows.extend(
                {
                    "split": split,
                    "image_id": record.id,
                    "file": _shown(split_files[split]),
                    "item": f"image {record.id}",
                    "label": label,
                }
                for label in record.labels
            )
    inspected = pd.DataFrame(
        _inspect_all(image_paths, max_pixels), columns=["decode_error", "real_width", "real_height", "content_hash"]
    ).astype({"decode_error": "object", "real_width": "float64", "real_height": "float64", "content_hash": "object"})
    images = pd.concat(
        [
            pd.DataFrame(image_rows, columns=["split", "image_id", "file", "item", "width", "height", "num_labels"]),
            inspected,
        ],
        axis=1,
    )
    images["same_content_in"] = pd.Series(_same_content_elsewhere(images), dtype="object")
    annotations = pd.DataFrame(annotation_rows, columns=["split", "image_id", "file", "item", "label"])

    label_rows = []
    for index, name in enumerate(labels.names):
        row: dict[str, Any] = {"label": index, "name": name, "file": _shown(label_file), "item": f"label {name!r}"}
        for split, prepared in splits.items():
            row[f"{split}_images"] = sum(index in record.labels for record in prepared.records)
        label_rows.append(row)
    return Tables(images, annotations, pd.DataFrame(label_rows))


def _import_gx() -> ModuleType:
    """great_expectations, imported on first use (3-4 s) without its side effects on logging."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO chatter buries ours
    showwarning = warnings.showwarning
    import great_expectations as gx

    if warnings.showwarning is not showwarning:  # GX calls logging.captureWarnings(True) on import
        logging.captureWarnings(False)
    return gx


def expectations(config: Config, num_labels: int) -> dict[str, list[Any]]:
    """The suite per table; each `description` is the rule shown in the failure table and docs."""
    gxe = _import_gx().expectations

    knobs = config.validate_
    images = [
        gxe.ExpectColumnValuesToBeUnique(column="image_id", description="image ids are unique"),
        gxe.ExpectColumnValuesToBeNull(column="decode_error", description="the image file exists and decodes"),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=1, description="width is positive"),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=1, description="height is positive"),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="width",
            column_B="real_width",
            ignore_row_if="either_value_is_missing",
            description="width equals the file's",
        ),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="height",
            column_B="real_height",
            ignore_row_if="either_value_is_missing",
            description="height equals the file's",
        ),
        gxe.ExpectColumnValuesToBeNull(column="same_content_in", description="no identical image in another split"),
    ]
    if not knobs.allow_unlabeled:
        images.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="num_labels", min_value=1, description="every image has a label (validate.allow_unlabeled)"
            )
        )
    annotations = [
        gxe.ExpectColumnValuesToBeInSet(
            column="label",
            value_set=list(range(num_labels)),
            description=f"label is one of the {num_labels} categories",
        )
    ]
    labels = [
        gxe.ExpectColumnValuesToBeBetween(
            column="train_images",
            min_value=knobs.min_positives,
            description=f"at least {knobs.min_positives} training images per label (validate.min_positives)",
        )
    ]
    return {"images": images, "annotations": annotations, "labels": labels}


def run_suites(tables: Tables, suites: dict[str, list[Any]], project_dir: Path) -> list[Any]:
    """One checkpoint per table in a file-backed GX project under `project_dir`; data docs updated."""
    gx = _import_gx()
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(project_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("prepared")
    results = []
    for name, frame in tables.named().items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=suites[name]))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": _ROW_ID},
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        results.extend(outcome.run_results.values())
    return results


def _checked_columns(kwargs: dict[str, Any]) -> list[str]:
    return [kwargs[key] for key in ("column", "column_A", "column_B") if key in kwargs]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def failures_of(results: list[Any]) -> list[Failure]:
    """Every unexpected row of every failed expectation, as (file, field, value, rule).

    Defects of images and annotations come first; per-label counts (a threshold, one row per
    label, often many) come last, so they never push a broken file out of the table.
    """
    found = []
    for validation in sorted(results, key=lambda result: REPORT_ORDER.index(result.suite_name)):
        for outcome in validation.results:
            if outcome.success:
                continue
            expectation = outcome.expectation_config
            columns = _checked_columns(expectation.kwargs)
            rows = outcome.result.get("unexpected_index_list") or []
            if not rows:  # the expectation itself could not be evaluated: report that, never pass
                error = (outcome.exception_info or {}).get("exception_message") or "expectation failed"
                found.append(Failure(validation.suite_name, " / ".join(columns), str(error), expectation.description))
            for row in rows:
                values = [row.get(column) for column in columns]
                value = str(values[0]) if len(values) == 1 else " vs ".join(map(str, values))
                found.append(
                    Failure(row["file"], f"{row['item']}: {' / '.join(columns)}", value, expectation.description)
                )
    return found


def failure_table(failures: list[Failure], report: Path) -> str:
    rows = [Failure("file", "field", "value", "rule")] + failures[:MAX_FAILURE_ROWS]
    cells = [[row.file, row.field, _clip(row.value), row.rule] for row in rows]  # values can be long error texts
    widths = [max(len(line[column]) for line in cells) for column in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True)) + "  " + line[3]
        for line in cells
    ]
    if len(failures) > MAX_FAILURE_ROWS:
        lines.append(f"… and {len(failures) - MAX_FAILURE_ROWS} more in the report")
    return f"{len(failures)} problem(s) in the prepared data:\n" + "\n".join(lines) + f"\nreport: {report}"


def data_metrics(tables: Tables, labels: LabelSet) -> dict[str, Any]:
    """Counts per split: a handful of columns in `dvc exp show`, comparable across data versions.

    Per-label counts (80 labels × 3 splits for COCO) would bury the models' mAP there: they go to
    `label_frequency_table` instead.
    """
    images_per_split = tables.images.groupby("split").size()
    labels_per_split = tables.annotations.groupby("split").size()
    return {
        "num_labels": labels.num_classes,
        "images": {split: int(images_per_split.get(split, 0)) for split in SPLIT_NAMES},
        "image_labels": {split: int(labels_per_split.get(split, 0)) for split in SPLIT_NAMES},
    }


def label_frequency_table(tables: Tables) -> str:
    """Images per label and split as CSV (label,train,val,test): `git diff` shows what a data version changed."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["label", *SPLIT_NAMES])
    for row in tables.labels.to_dict("records"):
        writer.writerow([row["name"], *(int(row[f"{split}_images"]) for split in SPLIT_NAMES)])
    return text.getvalue()


def run(config: Config, paths: Paths) -> ValidateResult:
    """Validate data/prepared/; writes reports always, metrics/data.json only when all passes."""
    started = time.perf_counter()
    paths.data_metrics.unlink(missing_ok=True)  # never leave a stale "passed" behind a failure
    paths.label_frequency.unlink(missing_ok=True)
    labels = load_labels(paths.labels_file)
    split_files = {split: paths.split_file(split) for split in SPLIT_NAMES}
    splits = {split: load_split(path) for split, path in split_files.items()}
    tables = build_tables(labels, splits, split_files, config.data.max_image_pixels, label_source(config, paths))
    suites = expectations(config, labels.num_classes)
    with atomic_dir(paths.validation_reports) as staging:
        results = run_suites(tables, suites, staging)
        write_json(
            staging / RESULT_FILE,
            {"success": all(r.success for r in results), "validations": [r.to_json_dict() for r in results]},
        )
    report = paths.validation_reports / DATA_DOCS_INDEX
    failures = failures_of(results)
    if failures:
        raise ValidationFailed(
            failure_table(failures, report),
            fix="repair or remove the listed items in the source data and re-run `mlic prepare` and "
            "`mlic validate` (or change a validate.* knob deliberately)",
        )
    write_text(paths.label_frequency, label_frequency_table(tables))
    write_json(paths.data_metrics, data_metrics(tables, labels))
    return ValidateResult(
        split_sizes={split: len(prepared.records) for split, prepared in splits.items()},
        num_labels=labels.num_classes,
        num_annotations=len(tables.annotations),
        num_expectations=sum(len(items) for items in suites.values()),
        report=report,
        result_file=paths.validation_reports / RESULT_FILE,
        metrics_file=paths.data_metrics,
        seconds=time.perf_counter() - started,
    )
