"""`mlic data add | import` without DVC: option parsing, layout checks and the params they write."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mlic.config import load_config
from mlic.data.versions import Layout, add, data_params_text, make_layout, parse_located
from mlic.errors import ConfigError, DataError
from mlic.paths import Paths

PROJECT_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_located_options_are_one_path_or_one_per_split() -> None:
    assert parse_located(None, "--images") is None
    assert parse_located(["train2017"], "--images") == "train2017"
    assert parse_located(["train=a.json", "test=b.json"], "--annotations") == {"train": "a.json", "test": "b.json"}
    with pytest.raises(ConfigError, match="SPLIT=PATH") as caught:
        parse_located(["a.json", "test=b.json"], "--annotations")
    assert caught.value.field == "--annotations"


def test_layouts_say_what_each_format_needs() -> None:
    assert make_layout("voc", None, None) == Layout("voc", ".", None)
    with pytest.raises(ConfigError, match="needs --annotations and --images") as caught:
        make_layout("coco", "a.json", None)
    assert caught.value.field == "--images"
    with pytest.raises(ConfigError, match="JPEGImages"):
        make_layout("voc", None, "images")


def test_params_are_written_with_their_comments_and_validated(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(PROJECT_PARAMS, params)
    per_split = {"train": "data/raw/coco/a.json", "test": "data/raw/coco/b.json"}
    params.write_text(
        data_params_text(params, {"source": "coco", "path": per_split, "image_dir": "data/raw/coco/images"})
    )
    text = params.read_text()
    assert (
        "# synthetic | coco | voc" in text and "path: {train: data/raw/coco/a.json, test: data/raw/coco/b.json}" in text
    )
    config = load_config(params)
    assert config.data.path == per_split and config.data.image_dir == "data/raw/coco/images"
    assert yaml.safe_load(text)["train"] == yaml.safe_load(PROJECT_PARAMS.read_text())["train"]  # the rest untouched
    with pytest.raises(ConfigError, match="data.image_dir is required"):
        data_params_text(params, {"source": "coco", "path": "a.json", "image_dir": None})


def test_a_layout_path_missing_from_the_dataset_stops_before_dvc_runs(tmp_path: Path, coco_2014: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(PROJECT_PARAMS, params)
    layout = Layout(
        "coco", {"train": "annotations/instances_train2014.json", "test": "annotations/nope.json"}, "train2014"
    )
    with pytest.raises(DataError, match="'annotations/nope.json' is not in the dataset") as caught:
        add(Paths(tmp_path / "project"), coco_2014, layout, params)
    assert caught.value.field == "--annotations"
    assert not (tmp_path / "project" / "data").exists()
