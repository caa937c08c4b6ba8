"""Published protocols (COCO train/val files, VOC trainval/test lists), label-less COCO images, and
the warning for datasets DVC cannot see."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mlic.config import Config
from mlic.data.canonical import load_split
from mlic.errors import ConfigError, DataError
from mlic.paths import Paths
from mlic.steps import prepare

MakeConfig = Callable[..., Config]


def _coco_2014_data(root: Path, **extra: object) -> dict:
    return {
        "source": "coco",
        "path": {
            "train": str(root / "annotations/instances_train2014.json"),
            "test": str(root / "annotations/instances_val2014.json"),
        },
        "image_dir": {"train": str(root / "train2014"), "test": str(root / "val2014")},
        **extra,
    }


def _file_ids(instances: Path) -> tuple[list[int], list[int]]:
    """(ids of annotated images, ids of images without annotations) of one instances file."""
    payload = json.loads(instances.read_text())
    annotated = {annotation["image_id"] for annotation in payload["annotations"]}
    ids = [image["id"] for image in payload["images"]]
    return sorted(i for i in ids if i in annotated), sorted(i for i in ids if i not in annotated)


def _ids(paths: Paths) -> dict[str, list[int]]:
    return {
        name: sorted(record.id for record in load_split(paths.split_file(name)).records)
        for name in ("train", "val", "test")
    }


def test_coco_files_per_split_keep_the_published_test_set_and_carve_val_from_train(
    tmp_path: Path, make_config: MakeConfig, coco_2014: Path
) -> None:
    paths = Paths(tmp_path / "project")
    result = prepare.run(make_config(data=_coco_2014_data(coco_2014, split={"val": 0.25, "test": 0.2})), paths)
    ids = _ids(paths)
    train_ids, unlabeled_ids = _file_ids(coco_2014 / "annotations/instances_train2014.json")
    assert ids["test"] == _file_ids(coco_2014 / "annotations/instances_val2014.json")[0]
    assert sorted(ids["train"] + ids["val"]) == train_ids and len(unlabeled_ids) == 1  # dropped
    assert len(ids["val"]) == 2
    assert "1 images without annotations left out" in result.summary()
    test = load_split(paths.split_file("test"))
    assert test.image_root == coco_2014.resolve()
    assert all((test.image_root / record.file_name).is_file() for record in test.records)
    assert {record.file_name.split("/")[0] for record in load_split(paths.split_file("train")).records} == {"train2014"}

    again = Paths(tmp_path / "again")
    prepare.run(make_config(data=_coco_2014_data(coco_2014, split={"val": 0.25, "test": 0.2})), again)
    assert _ids(again) == ids  # the carve is seeded


def test_an_image_in_two_split_files_is_refused(tmp_path: Path, make_config: MakeConfig, coco_2014: Path) -> None:
    data = _coco_2014_data(coco_2014)
    data["path"]["val"] = data["path"]["test"]
    data["image_dir"]["val"] = data["image_dir"]["test"]
    with pytest.raises(DataError, match="image id 109 is also in") as caught:  # the same file twice shares ids
        prepare.run(make_config(data=data), Paths(tmp_path / "project"))
    assert caught.value.field in {"data.path.val", "data.path.test"}


def test_coco_files_with_other_categories_are_refused(tmp_path: Path, make_config: MakeConfig, coco_2014: Path) -> None:
    val_file = coco_2014 / "annotations/instances_val2014.json"
    payload = json.loads(val_file.read_text())
    payload["categories"][2]["name"] = "mug"
    val_file.write_text(json.dumps(payload))
    with pytest.raises(DataError, match="categories differ") as caught:
        prepare.run(make_config(data=_coco_2014_data(coco_2014)), Paths(tmp_path / "project"))
    assert caught.value.file == str(val_file) and caught.value.field == "categories"
    train_file = coco_2014 / "annotations/instances_train2014.json"
    assert str(train_file) in caught.value.message and str(val_file) in caught.value.render()
    assert "only in that one: 9 'cup'; only in this one: 9 'mug'" in caught.value.message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: data["path"].pop("test"), "needs at least 'train' and 'test'"),
        (lambda data: data["image_dir"].pop("test"), "same keys"),
        (lambda data: data.update(path="instances.json"), "same keys"),
        (lambda data: data.update(source="voc"), "per split is for coco"),
    ],
)
def test_per_split_settings_are_checked(
    make_config: MakeConfig, coco_2014: Path, change: Callable, message: str
) -> None:
    data = _coco_2014_data(coco_2014)
    change(data)
    with pytest.raises(ConfigError, match=message):
        make_config(data=data)


UNLABELED_ID = 999


def _coco_with_unlabeled(coco_dataset: tuple[Path, Path], draw_image: Callable) -> dict:
    instances, image_dir = coco_dataset
    payload = json.loads(instances.read_text())
    payload["images"].append({"id": UNLABELED_ID, "file_name": "lonely.jpg", "width": 20, "height": 20})
    instances.write_text(json.dumps(payload))
    draw_image(image_dir / "lonely.jpg", 20, 20, 7)
    return {"source": "coco", "path": str(instances), "image_dir": str(image_dir)}


def test_unlabeled_images_are_dropped_by_default_and_counted(
    tmp_path: Path, make_config: MakeConfig, coco_dataset: tuple[Path, Path], draw_image: Callable
) -> None:
    paths = Paths(tmp_path / "project")
    result = prepare.run(make_config(data=_coco_with_unlabeled(coco_dataset, draw_image)), paths)
    assert result.unlabeled_dropped == 1 and "1 images without annotations left out" in result.summary()
    assert all(UNLABELED_ID not in ids for ids in _ids(paths).values())


def test_unlabeled_images_can_be_kept(
    tmp_path: Path, make_config: MakeConfig, coco_dataset: tuple[Path, Path], draw_image: Callable
) -> None:
    paths = Paths(tmp_path / "project")
    data = _coco_with_unlabeled(coco_dataset, draw_image)
    result = prepare.run(make_config(data={**data, "coco": {"unlabeled": "keep"}}), paths)
    records = {r.id: r for name in ("train", "val", "test") for r in load_split(paths.split_file(name)).records}
    assert records[UNLABELED_ID].labels == [] and result.unlabeled_dropped == 0


def test_unlabeled_images_can_stop_prepare(
    tmp_path: Path, make_config: MakeConfig, coco_dataset: tuple[Path, Path], draw_image: Callable
) -> None:
    data = _coco_with_unlabeled(coco_dataset, draw_image)
    with pytest.raises(DataError, match=f"image id {UNLABELED_ID} \\(lonely.jpg\\)") as caught:
        prepare.run(make_config(data={**data, "coco": {"unlabeled": "error"}}), Paths(tmp_path / "project"))
    assert caught.value.file == data["path"] and caught.value.field == "data.coco.unlabeled" and caught.value.fix


def test_voc_trainval_and_test_lists_carve_val_from_trainval(
    tmp_path: Path, make_config: MakeConfig, voc_root: Path
) -> None:
    main = voc_root / "ImageSets" / "Main"
    (main / "trainval.txt").write_text((main / "train.txt").read_text() + (main / "val.txt").read_text())
    data = {
        "source": "voc",
        "path": str(voc_root),
        "voc": {"image_sets": {"train": "trainval", "test": "test"}},
        "split": {"val": 0.34, "test": 0.2},
    }
    paths = Paths(tmp_path / "project")
    prepare.run(make_config(data=data), paths)
    stems = {
        name: sorted(r.file_name.removesuffix(".jpg") for r in load_split(paths.split_file(name)).records)
        for name in ("train", "val", "test")
    }
    assert stems["test"] == ["000008", "000009"]
    assert sorted(stems["train"] + stems["val"]) == ["000001", "000002", "000003", "000004", "000005", "000007"]
    assert len(stems["val"]) == 2


def test_a_dataset_outside_data_raw_works_with_a_warning(
    tmp_path: Path, make_config: MakeConfig, voc_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = Paths(tmp_path / "project")
    with caplog.at_level(logging.WARNING, logger="mlic.steps.prepare"):
        prepare.run(make_config(data={"source": "voc", "path": str(voc_root)}), project)
    assert f"{voc_root.resolve()} is outside" in caplog.text and "mlic data add" in caplog.text

    caplog.clear()
    tracked = project.raw_data / "voc"
    shutil.copytree(voc_root, tracked)
    with caplog.at_level(logging.WARNING, logger="mlic.steps.prepare"):
        prepare.run(make_config(data={"source": "voc", "path": "data/raw/voc"}), project)
    assert "is outside" not in caplog.text
