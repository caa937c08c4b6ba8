"""`mlic package`: the archive TorchServe will load, its config.properties, and its failures."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from mlic.errors import ServingError
from mlic.io import read_json, write_json
from mlic.paths import Paths
from mlic.serving.archive import HANDLER_FILE, read_properties
from mlic.steps import package

EXPECTED_MEMBERS = {"weights.pt", "config.json", "serving.json", "handler.py", "MAR-INF/MANIFEST.json"}


@pytest.fixture
def packaged(chosen_model_root: Path, serving_params) -> tuple[Paths, package.PackageResult]:
    paths = Paths(chosen_model_root)
    return paths, package.run(serving_params, paths)


def test_archive_holds_state_dict_specs_and_handler_only(packaged) -> None:
    paths, result = packaged
    assert result.archive == paths.model_store / "mlic.mar"
    with zipfile.ZipFile(result.archive) as bundle:
        assert set(bundle.namelist()) == EXPECTED_MEMBERS
        manifest = json.loads(bundle.read("MAR-INF/MANIFEST.json"))
        serving = json.loads(bundle.read("serving.json"))
        config = json.loads(bundle.read("config.json"))
        weights = bundle.read("weights.pt")
        handler_source = bundle.read("handler.py").decode()
    model = manifest["model"]
    assert model["modelName"] == "mlic" and model["modelVersion"] == "1.0"
    assert model["handler"] == "handler.py" and model["serializedFile"] == "weights.pt"
    assert "modelFile" not in model  # no model code to pickle or import from the archive
    assert handler_source == HANDLER_FILE.read_text()
    best = read_json(paths.best_file)
    assert serving["label_names"] == best["label_names"] == config["label_names"]
    assert serving["thresholds"] == best["thresholds"]
    assert serving["max_image_pixels"] == 50_000_000
    state = torch.load(io.BytesIO(weights), weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())


def test_config_properties_lock_the_server_down(packaged) -> None:
    paths, result = packaged
    assert result.config_properties == paths.serving_config
    properties = read_properties(paths.serving_config)
    assert properties["disable_token_authorization"] == "false"
    assert properties["enable_model_api"] == "false"
    assert properties["allowed_urls"] == r"^file://.*\.mar$"  # no http(s) model sources
    for api in ("inference_address", "management_address", "metrics_address"):
        assert properties[api].startswith("http://127.0.0.1:")
    assert properties["grpc_inference_address"] == properties["grpc_management_address"] == "127.0.0.1"
    assert properties["max_request_size"] == properties["max_response_size"] == str(10 * 1024 * 1024)
    assert properties["limit_max_image_pixels"] == "true"
    assert properties["metrics_mode"] == "prometheus" and properties["enable_metrics_api"] == "true"
    settings = json.loads(properties["models"])["mlic"]["1.0"]
    assert settings == {
        "defaultVersion": True,
        "marName": "mlic.mar",
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 4,
        "maxBatchDelay": 100,
    }
    # Java properties unescape backslashes: the file must hold the regex with its backslash doubled.
    assert r"allowed_urls=^file://.*\\.mar$" in paths.serving_config.read_text()


def test_summary_names_the_archive_and_the_check(packaged) -> None:
    _, result = packaged
    summary = result.summary()
    assert str(result.archive) in summary and "verified" in summary and "mlic serve" in summary
    chosen = [item["label"] for item in result.probe_answer["labels"]]
    assert "boat" in chosen and "street" not in chosen  # thresholds 0.0 and 1.0


def test_missing_best_json_says_run_evaluate(tmp_path: Path, serving_params) -> None:
    paths = Paths(tmp_path)
    with pytest.raises(ServingError) as caught:
        package.run(serving_params, paths)
    assert caught.value.file == str(paths.best_file)
    assert "mlic evaluate" in caught.value.fix and "gate" in caught.value.fix
    assert not paths.serving_dir.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"thresholds": [0.5]}, "thresholds"),
        ({"thresholds": [0.5, 0.5, 0.5, 1.5]}, "thresholds"),
        ({"arch": None}, "arch"),
        ({"label_names": ["boat", "sea", "car", "tram"]}, "label_names"),
        ({"model_dir": "artifacts/models/missing"}, "model_dir"),
    ],
)
def test_bad_best_json_is_named(chosen_model_root: Path, serving_params, change: dict, field: str) -> None:
    paths = Paths(chosen_model_root)
    write_json(paths.best_file, {**read_json(paths.best_file), **change})
    with pytest.raises(ServingError) as caught:
        package.run(serving_params, paths)
    assert caught.value.field == field
    assert not paths.serving_dir.exists()


def test_broken_json_is_a_serving_error(chosen_model_root: Path, serving_params) -> None:
    paths = Paths(chosen_model_root)
    paths.best_file.write_text("{not json")
    with pytest.raises(ServingError, match="not valid JSON"):
        package.run(serving_params, paths)


def test_an_archive_that_cannot_load_keeps_the_last_good_one(packaged, serving_params) -> None:
    paths, result = packaged
    good = hashlib.sha256(result.archive.read_bytes()).hexdigest()
    weights = paths.model_dir("baseline") / "weights.pt"
    torch.save({"head.weight": torch.zeros(1)}, weights)  # loads, but does not fit the model
    with pytest.raises(ServingError, match="does not load back") as caught:
        package.run(serving_params, paths)
    assert "mlic package" in caught.value.fix
    assert hashlib.sha256(result.archive.read_bytes()).hexdigest() == good
    assert sorted(p.name for p in paths.serving_dir.parent.iterdir()) == ["best.json", "models", "serving"]
