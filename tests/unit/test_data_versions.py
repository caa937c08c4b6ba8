"""`mlic data add | import` without DVC: option parsing, layout checks and the params they write."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mlic.config import load_config
from mlic.data.versions import AddResult, Layout, add, data_params_text, make_layout, parse_located
from mlic.errors import ConfigError, DataError
from mlic.paths import Paths

PROJECT_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
COCO_2014 = Layout(
    "coco",
    {"train": "annotations/instances_train2014.json", "test": "annotations/instances_val2014.json"},
    {"train": "train2014", "test": "val2014"},
)


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


def test_a_folder_that_is_no_dvc_project_is_named_before_dvc_runs(tmp_path: Path, coco_2014: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(PROJECT_PARAMS, params)
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(DataError, match="not a DVC project") as caught:
        add(Paths(project), coco_2014, COCO_2014, params)
    assert caught.value.file == str(project) and "dvc init" in (caught.value.fix or "")
    assert list(project.iterdir()) == [] and params.read_text() == PROJECT_PARAMS.read_text()


def _imported(tmp_path: Path, url: str) -> str:
    command = ["dvc", "import", url, "coco", "-o", "data/raw/coco"]
    raw = tmp_path / "data" / "raw"
    return AddResult(raw / "coco", raw / "coco.dvc", command, {"source": "coco"}).summary(tmp_path)


def test_a_summary_shows_a_registry_url_without_its_credentials(tmp_path: Path) -> None:
    summary = _imported(tmp_path, "https://mlic:s3cr3t@git.example.com/ml/data.git")
    assert "s3cr3t" not in summary and "dvc import https://***@git.example.com/ml/data.git coco" in summary
    # DVC wrote the URL into the .dvc file as given: the summary says so before it says to commit it
    assert "warning: data/raw/coco.dvc holds the URL with its credentials" in summary
    assert summary.index("warning:") < summary.index("next: git add data/raw/coco.dvc")
    assert "warning" not in _imported(tmp_path, "https://git.example.com/ml/data.git")
