"""validate step with the real great_expectations: passes clean data, names every problem otherwise."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlic.cli import app
from mlic.config import Config
from mlic.data.canonical import ImageRecord, LabelSet, load_split, write_prepared
from mlic.errors import DataError, ValidationFailed
from mlic.paths import Paths
from mlic.steps import prepare, validate

MakeConfig = Callable[..., Config]
DrawImage = Callable[[Path, int, int, int], Path]


@pytest.fixture
def prepared(tmp_path: Path, make_config: MakeConfig) -> Paths:
    paths = Paths(tmp_path)
    prepare.run(make_config(), paths)
    return paths


def _record(paths: Paths, split: str, position: int = 0) -> tuple[ImageRecord, Path]:
    loaded = load_split(paths.split_file(split))
    record = loaded.records[position]
    return record, loaded.image_path(record)


def _shown(path: Path) -> str:
    return validate._shown(path)


def test_clean_data_passes_with_metrics_and_reports(prepared: Paths, make_config: MakeConfig) -> None:
    result = validate.run(make_config(), prepared)
    metrics = json.loads(prepared.data_metrics.read_text())
    assert sum(metrics["images"].values()) == 60 and metrics["num_labels"] == 21
    assert set(metrics) == {"num_labels", "images", "image_labels"}  # few columns in `dvc exp show`
    frequency = list(csv.DictReader(prepared.label_frequency.open()))
    assert len(frequency) == 21 and list(frequency[0]) == ["label", "train", "val", "test"]
    assert sum(int(row["train"]) for row in frequency) == metrics["image_labels"]["train"]
    train_labels = sum(len(r.labels) for r in load_split(prepared.split_file("train")).records)
    assert metrics["image_labels"]["train"] == train_labels
    stored = json.loads((prepared.validation_reports / validate.RESULT_FILE).read_text())
    assert stored["success"] is True and len(stored["validations"]) == 3
    assert result.report.is_file() and result.report.suffix == ".html"
    assert "validation passed" in result.summary() and str(result.report) in result.summary()


def test_bad_image_files_are_each_reported_and_metrics_removed(prepared: Paths, make_config: MakeConfig) -> None:
    validate.run(make_config(), prepared)  # leaves a metrics file that must not survive a failure
    _, missing = _record(prepared, "train", 0)
    _, empty = _record(prepared, "train", 1)
    _, corrupt = _record(prepared, "val", 0)
    _, original = _record(prepared, "train", 2)
    _, copy_in_test = _record(prepared, "test", 0)
    missing.unlink()
    empty.write_bytes(b"")
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    shutil.copy(original, copy_in_test)
    with pytest.raises(ValidationFailed) as caught:
        validate.run(make_config(), prepared)
    message = caught.value.message
    for path, problem in [
        (missing, "image file not found"),
        (empty, "image file is empty (0 bytes)"),
        (corrupt, "cannot decode image"),
        (copy_in_test, " train:"),
        (original, " test:"),
    ]:
        assert any(line.startswith(_shown(path)) and problem in line for line in message.splitlines()), (path, problem)
    assert "the image file exists and decodes" in message and "no identical image in another split" in message
    assert message.splitlines()[1].split() == ["file", "field", "value", "rule"]
    assert message.rstrip().endswith(str(prepared.validation_reports / validate.DATA_DOCS_INDEX))
    assert not prepared.data_metrics.exists() and not prepared.label_frequency.exists()
    stored = json.loads((prepared.validation_reports / validate.RESULT_FILE).read_text())
    assert stored["success"] is False
    assert (prepared.validation_reports / validate.DATA_DOCS_INDEX).is_file()


def _hand_made(root: Path, draw_image: DrawImage) -> Paths:
    """Prepared data with one of each annotation problem (written as any importer would)."""
    paths = Paths(root)
    images = paths.prepared / "images"
    labels = LabelSet(names=["boat", "car", "cup"], source_ids=[1, 2, 3])
    records: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    for image_id in range(12):
        split = ("train", "train", "val", "test")[image_id % 4]
        name = f"{image_id}.png"
        draw_image(images / name, 24, 16, image_id)
        records[split].append(ImageRecord(id=image_id, file_name=name, width=24, height=16, labels=[image_id % 2]))
    records["train"][0].labels = [0, 7]  # 7: not a category
    records["train"][1].width = 30  # the file is 24 wide
    records["train"][2].labels = []  # unlabelled
    records["val"][0].id = records["train"][3].id  # duplicate id
    records["test"][0].labels = [0, 2]  # cup: only outside the training split
    write_prepared(paths.prepared, records, labels, "images", "hand-made")
    return paths


def test_annotation_problems_are_each_named(tmp_path: Path, make_config: MakeConfig, draw_image: DrawImage) -> None:
    paths = _hand_made(tmp_path, draw_image)
    with pytest.raises(ValidationFailed) as caught:
        validate.run(make_config(validate={"min_positives": 2}), paths)
    lines = caught.value.message.splitlines()
    train_json = _shown(paths.split_file("train"))
    image = paths.prepared / "images"
    for file, field in [
        (train_json, "image 0: label"),  # unknown label 7
        (_shown(image / "1.png"), "image 1 (train): width / real_width"),  # annotated 30, the file is 24
        (_shown(image / "4.png"), "image 4 (train): num_labels"),  # unlabelled
        (_shown(image / "5.png"), "image 5 (train): image_id"),  # id 5 also in val
        (_shown(image / "2.png"), "image 5 (val): image_id"),
        (train_json, "label 'cup': train_images"),  # cup has no training image
    ]:
        assert any(line.startswith(file) and field in line for line in lines), (file, field)
    message = caught.value.message
    assert "label 'cup': train_images" in message and "at least 2 training images per label" in message
    assert "30 vs 24.0" in message and "label is one of the 3 categories" in message


def test_allow_unlabeled_accepts_images_without_labels(
    tmp_path: Path, make_config: MakeConfig, draw_image: DrawImage
) -> None:
    paths = _hand_made(tmp_path, draw_image)
    with pytest.raises(ValidationFailed) as caught:
        validate.run(make_config(validate={"allow_unlabeled": True}), paths)
    assert "every image has a label" not in caught.value.message
    assert "num_labels" not in caught.value.message


def test_missing_prepared_data_is_a_data_error(tmp_path: Path, make_config: MakeConfig) -> None:
    with pytest.raises(DataError, match="labels file not found") as caught:
        validate.run(make_config(), Paths(tmp_path))
    assert caught.value.file.endswith("labels.json")


def test_importing_gx_leaves_warnings_and_log_levels_as_they_were(prepared: Paths, make_config: MakeConfig) -> None:
    showwarning = warnings.showwarning
    validate.run(make_config(), prepared)
    assert warnings.showwarning is showwarning
    assert logging.getLogger("great_expectations").getEffectiveLevel() >= logging.WARNING


def test_cli_validate_failure_exits_non_zero_with_the_table(prepared: Paths) -> None:
    _, image = _record(prepared, "test", 1)
    image.write_bytes(b"not a png")
    params = prepared.root / "params.yaml"
    params.write_text(
        "data: {synthetic: {num_images: 60, image_size: 32, object_scales: [0.3, 0.5]}}\nvalidate: {min_positives: 1}\n"
    )
    result = CliRunner().invoke(app, ["validate", "--params", str(params), "--root", str(prepared.root)])
    assert result.exit_code == ValidationFailed.exit_code
    assert "1 problem(s) in the prepared data" in result.output and _shown(image) in result.output
    assert "report: " in result.output and "Traceback" not in result.output
    assert not prepared.data_metrics.exists()


def test_broken_files_come_before_label_counts_which_name_the_source_annotations(
    tmp_path: Path, coco_dataset: tuple[Path, Path], make_config: MakeConfig
) -> None:
    instances, image_dir = coco_dataset
    config = make_config(
        data={"source": "coco", "path": str(instances), "image_dir": str(image_dir)}, validate={"min_positives": 100}
    )
    paths = Paths(tmp_path / "project")
    prepare.run(config, paths)
    _, missing = _record(paths, "test", 0)
    missing.unlink()
    with pytest.raises(ValidationFailed) as caught:
        validate.run(config, paths)
    rows = caught.value.message.splitlines()[2:-1]
    assert rows[0].startswith(_shown(missing)) and "image file not found" in rows[0]
    label_rows = [row for row in rows if "train_images" in row]
    assert len(label_rows) == 3 and rows[-3:] == label_rows  # boat, car, cup: after the broken file
    assert all(row.startswith(_shown(instances)) for row in label_rows)
