"""prepare step: the canonical output per source, determinism, and no partial output on bad input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlic.cli import app
from mlic.config import Config
from mlic.data import synthetic
from mlic.data.canonical import load_labels, load_split
from mlic.errors import DataError
from mlic.paths import Paths
from mlic.steps import prepare

MakeConfig = Callable[..., Config]


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_synthetic_writes_the_canonical_format(tmp_path: Path, make_config: MakeConfig) -> None:
    paths = Paths(tmp_path)
    result = prepare.run(make_config(), paths)
    labels = load_labels(paths.labels_file)
    assert labels.names == [category.name for category in synthetic.CATEGORIES]
    splits = {name: load_split(paths.split_file(name)) for name in ("train", "val", "test")}
    assert sum(len(split.records) for split in splits.values()) == 60 == sum(result.split_sizes.values())
    for split in splits.values():
        assert split.image_root == (paths.prepared / "images").resolve()
        assert all(split.image_path(record).is_file() and record.labels for record in split.records)
    raw = json.loads(paths.split_file("train").read_text())
    assert raw["info"]["image_root"] == "images"
    assert all(len(annotation["bbox"]) == 4 for annotation in raw["annotations"])  # drawn boxes kept
    assert "prepared synthetic data" in result.summary() and "21 labels" in result.summary()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path, make_config: MakeConfig) -> None:
    first, second, other = Paths(tmp_path / "a"), Paths(tmp_path / "b"), Paths(tmp_path / "c")
    prepare.run(make_config(), first)
    prepare.run(make_config(), second)
    prepare.run(make_config(data={"seed": 1}), other)
    assert _tree_digest(first.prepared) == _tree_digest(second.prepared)
    assert _tree_digest(first.prepared)["train.json"] != _tree_digest(other.prepared)["train.json"]


def test_max_train_per_label_caps_the_training_split_only(tmp_path: Path, make_config: MakeConfig) -> None:
    paths = Paths(tmp_path)
    config = make_config(data={"synthetic": {"num_images": 120, "max_train_per_label": 6}})
    result = prepare.run(config, paths)
    train = load_split(paths.split_file("train"))
    counts = [sum(label in record.labels for record in train.records) for label in range(len(synthetic.CATEGORIES))]
    assert max(counts) <= 6 and result.capped > 0
    assert len(list((paths.prepared / "images").iterdir())) == sum(result.split_sizes.values())  # dropped: not drawn
    assert "max_train_per_label" in result.summary()


def test_coco_is_split_and_read_in_place(
    tmp_path: Path, make_config: MakeConfig, coco_dataset: tuple[Path, Path]
) -> None:
    instances, image_dir = coco_dataset
    paths = Paths(tmp_path / "project")
    config = make_config(data={"source": "coco", "path": str(instances), "image_dir": str(image_dir)})
    result = prepare.run(config, paths)
    assert json.loads(paths.labels_file.read_text())["categories"][2] == {"index": 2, "name": "cup", "source_id": 9}
    assert not (paths.prepared / "images").exists()
    ids = []
    for name in ("train", "val", "test"):
        split = load_split(paths.split_file(name))
        assert split.image_root == image_dir.resolve()
        ids += [record.id for record in split.records]
    assert sorted(ids) == list(range(101, 113)) and result.image_root == str(image_dir.resolve())


def test_relative_dataset_paths_are_taken_from_the_project_root(make_config: MakeConfig, voc_root: Path) -> None:
    paths = Paths(voc_root.parent)
    prepare.run(make_config(data={"source": "voc", "path": voc_root.name}), paths)
    assert [len(load_split(paths.split_file(name)).records) for name in ("train", "val", "test")] == [5, 1, 2]


def test_voc_without_imagesets_is_split_at_random(tmp_path: Path, make_config: MakeConfig, voc_root: Path) -> None:
    for listed in (voc_root / "ImageSets" / "Main").iterdir():
        listed.unlink()
    result = prepare.run(make_config(data={"source": "voc", "path": str(voc_root)}), Paths(tmp_path / "project"))
    assert sum(result.split_sizes.values()) == 8 and all(result.split_sizes.values())


def _break_coco(change: Callable[[dict], None]) -> Callable[[Path], dict]:
    def apply(root: Path) -> dict:
        instances = root / "coco" / "instances.json"
        payload = json.loads(instances.read_text())
        change(payload)
        instances.write_text(json.dumps(payload))
        return {"source": "coco", "path": str(instances), "image_dir": str(root / "coco" / "images")}

    return apply


def _coco_text(text: Callable[[str], str]) -> Callable[[Path], dict]:
    def apply(root: Path) -> dict:
        instances = root / "coco" / "instances.json"
        instances.write_text(text(instances.read_text()))
        return {"source": "coco", "path": str(instances), "image_dir": str(root / "coco" / "images")}

    return apply


def _voc_xml(text: str) -> Callable[[Path], dict]:
    def apply(root: Path) -> dict:
        (root / "voc" / "Annotations" / "000002.xml").write_text(text)
        return {"source": "voc", "path": str(root / "voc")}

    return apply


BAD_INPUT: dict[str, tuple[Callable[[Path], dict], str, str | None]] = {
    "missing dataset path": (
        lambda root: {"source": "coco", "path": str(root / "absent.json"), "image_dir": str(root / "coco" / "images")},
        "absent.json",
        "data.path",
    ),
    "non-JSON COCO": (_coco_text(lambda text: "<html>not json</html>"), "instances.json", None),
    "truncated COCO": (_coco_text(lambda text: text[:-200]), "instances.json", None),
    "unknown category id": (
        _break_coco(lambda payload: payload["annotations"][0].update(category_id=5)),
        "instances.json",
        "annotations[0].category_id",
    ),
    "VOC XML without objects": (
        _voc_xml("<annotation><size><width>4</width><height>3</height></size></annotation>"),
        "000002.xml",
        "object",
    ),
    "malformed VOC XML": (_voc_xml("<annotation><object>"), "000002.xml", "xml"),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_names_file_and_field_and_leaves_the_old_output(
    tmp_path: Path, make_config: MakeConfig, coco_dataset: tuple[Path, Path], voc_root: Path, case: str
) -> None:
    paths = Paths(tmp_path / "project")
    prepare.run(make_config(), paths)
    before = _tree_digest(paths.prepared)
    breaks, file_part, field = BAD_INPUT[case]
    with pytest.raises(DataError) as caught:
        prepare.run(make_config(data=breaks(tmp_path)), paths)
    assert file_part in caught.value.file and caught.value.field == field and caught.value.fix
    assert _tree_digest(paths.prepared) == before
    assert [p.name for p in paths.prepared.parent.iterdir()] == ["prepared"]  # no staging left behind


def test_a_failed_first_run_leaves_no_prepared_folder(tmp_path: Path, make_config: MakeConfig) -> None:
    paths = Paths(tmp_path)
    with pytest.raises(DataError):
        prepare.run(make_config(data={"source": "voc", "path": str(tmp_path / "absent")}), paths)
    assert not paths.prepared.exists()


def test_cli_reports_bad_input_with_exit_code_and_no_traceback(tmp_path: Path, coco_dataset: tuple[Path, Path]) -> None:
    instances, image_dir = coco_dataset
    instances.write_text(instances.read_text()[:100])
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"source": "coco", "path": str(instances), "image_dir": str(image_dir)}}))
    result = CliRunner().invoke(app, ["prepare", "--params", str(params), "--root", str(tmp_path)])
    assert result.exit_code == DataError.exit_code
    assert f"{instances}: COCO instances file is not valid JSON" in result.output
    assert "fix: re-export or repair the file" in result.output and "Traceback" not in result.output
    assert not Paths(tmp_path).prepared.exists()
