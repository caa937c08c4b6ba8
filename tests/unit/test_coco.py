"""COCO import: id mapping, crowd handling, silence, and structure errors that name file and field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlic.cli import app
from mlic.data.coco import load_coco
from mlic.errors import DataError


def _by_id(records: list) -> dict[int, Any]:
    return {record.id: record for record in records}


def test_non_contiguous_ids_become_indices_and_source_ids_are_kept(coco_dataset: tuple[Path, Path]) -> None:
    records, labels = load_coco(*coco_dataset, include_crowd=True)
    assert labels.names == ["boat", "car", "cup"] and labels.source_ids == [1, 4, 9]
    images = _by_id(records)
    assert [record.id for record in records] == list(range(101, 113))  # the file's order and ids
    assert images[102].labels == [0, 1] and images[104].labels == [2]
    assert (images[101].width, images[101].height, images[101].file_name) == (40, 30, "101.jpg")
    assert images[102].boxes == [(0, [2.0, 3.0, 10.0, 8.0]), (1, [6.0, 3.0, 10.0, 8.0])]


def test_crowd_annotations_follow_include_crowd(coco_dataset: tuple[Path, Path]) -> None:
    with_crowd, _ = load_coco(*coco_dataset, include_crowd=True)
    without_crowd, _ = load_coco(*coco_dataset, include_crowd=False)
    assert _by_id(with_crowd)[112].labels == [1, 2]
    assert _by_id(without_crowd)[112].labels == [1]


def test_pycocotools_prints_nothing(coco_dataset: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    load_coco(*coco_dataset, include_crowd=True)
    assert capsys.readouterr().out == ""


def _edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        payload = json.loads(path.read_text())
        change(payload)
        path.write_text(json.dumps(payload))

    return apply


BROKEN: dict[str, tuple[Callable[[Path], None], str | None, str]] = {
    "not JSON": (lambda p: p.write_text("images: [oops"), None, "not valid JSON"),
    "truncated": (lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]), None, "not valid JSON"),
    "unknown category": (
        _edit(lambda d: d["annotations"][3].update(category_id=77)),
        "annotations[3].category_id",
        "unknown category id 77",
    ),
    "unknown image": (
        _edit(lambda d: d["annotations"][0].update(image_id=999)),
        "annotations[0].image_id",
        "unknown image id 999",
    ),
    "no images list": (_edit(lambda d: d.pop("images")), "images", "missing or not a list"),
    "image without width": (_edit(lambda d: d["images"][2].pop("width")), "images[2].width", "'width' is missing"),
    "duplicate image id": (_edit(lambda d: d["images"][1].update(id=101)), "images[1].id", "duplicate id 101"),
    "not an object": (lambda p: p.write_text("[1, 2]"), None, "not a JSON object"),
    "box of negative width": (
        _edit(lambda d: d["annotations"][4].update(bbox=[12.0, 3.0, -10.0, 8.0])),
        "annotations[4].bbox",
        r"annotation 5 \(image 104\): box \[x, y, width, height\] = \[12.0, 3.0, -10.0, 8.0\] has no area",
    ),
    "box outside its image": (
        _edit(lambda d: d["annotations"][0].update(bbox=[50.0, 3.0, 10.0, 8.0])),
        "annotations[0].bbox",
        r"annotation 1 \(image 101\): .* reaches outside its 40×30 image",
    ),
    "box not numbers": (
        _edit(lambda d: d["annotations"][1].update(bbox=[2, 3, "10", 8])),
        "annotations[1].bbox",
        "not four numbers",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_instances_file_names_file_and_field(coco_dataset: tuple[Path, Path], case: str) -> None:
    instances, image_dir = coco_dataset
    breaks, field, message = BROKEN[case]
    breaks(instances)
    with pytest.raises(DataError, match=message) as caught:
        load_coco(instances, image_dir, include_crowd=True)
    assert caught.value.file == str(instances)
    assert caught.value.field == field
    assert caught.value.fix


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_mlic_prepare_on_a_broken_file_prints_one_error_and_writes_nothing(
    coco_dataset: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    """The corpus as a user meets it: exit code, one message naming file and field, no traceback,
    no prepared data and no staging folder left."""
    instances, image_dir = coco_dataset
    breaks, field, _ = BROKEN[case]
    breaks(instances)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"source": "coco", "path": str(instances), "image_dir": str(image_dir)}}))
    result = CliRunner().invoke(app, ["prepare", "--params", str(params), "--root", str(tmp_path)])
    assert result.exit_code == DataError.exit_code, result.output
    assert str(instances) in result.output and (field is None or f"[{field}]" in result.output), result.output
    assert "fix: " in result.output and "Traceback" not in result.output
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_missing_paths_name_the_config_field(coco_dataset: tuple[Path, Path], tmp_path: Path) -> None:
    instances, image_dir = coco_dataset
    with pytest.raises(DataError, match="instances file not found") as caught:
        load_coco(tmp_path / "nope.json", image_dir, include_crowd=True)
    assert caught.value.field == "data.path"
    with pytest.raises(DataError, match="image folder not found") as caught:
        load_coco(instances, tmp_path / "no-images", include_crowd=True)
    assert caught.value.field == "data.image_dir"


def test_every_bad_box_is_named_and_a_pixel_of_rounding_is_accepted(coco_dataset: tuple[Path, Path]) -> None:
    instances, image_dir = coco_dataset

    def boxes(payload: dict) -> None:
        payload["annotations"][1]["bbox"] = [22.5, 0.0, 10.4, 24.9]  # image 102 is 32×24: within a pixel
        payload["annotations"][7]["bbox"] = [2.0, 3.0, 10.0, 0.0]
        payload["annotations"][9]["bbox"] = [-5.0, 3.0, 3.0, 8.0]

    _edit(boxes)(instances)
    with pytest.raises(DataError) as caught:
        load_coco(instances, image_dir, include_crowd=True)
    message = caught.value.message
    assert message.startswith("annotation 8 (image 106)") and "1 more bad box(es)" in message
    assert "annotation 10 (image 107)" in message and "annotation 2 " not in message
