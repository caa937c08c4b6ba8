"""Shared fixtures, one section per area. Tests run offline and without DVC analytics."""

from __future__ import annotations

import os

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from annotation_fixtures import TEST_DATA, write_coco_2014, write_noise_image

from mlic.config import Config, config_from_dict

pytest_plugins = ["fault_report"]  # `make faults-report`: the reliability table from every `fault` test


# ---------------------------------------------------------------------------------------------
# Data fixtures (prepare / validate): text annotations live in tests/data, images are drawn here
# into tmp_path so no binary is committed.
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def draw_image() -> Callable[[Path, int, int, int], Path]:
    """`write_noise_image` for tests that build their own image folders."""
    return write_noise_image


@pytest.fixture
def coco_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """(instances JSON, image folder): 12 images, category ids 1/4/9, one crowd-only label."""
    instances = tmp_path / "coco" / "instances.json"
    instances.parent.mkdir(parents=True)
    shutil.copy(TEST_DATA / "coco" / "instances.json", instances)
    image_dir = tmp_path / "coco" / "images"
    for image in json.loads(instances.read_text())["images"]:
        write_noise_image(image_dir / image["file_name"], image["width"], image["height"], seed=image["id"])
    return instances, image_dir


@pytest.fixture
def coco_2014(tmp_path: Path) -> Path:
    """A COCO 2014-style folder (see `write_coco_2014`)."""
    return write_coco_2014(tmp_path / "coco")


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """A VOC root: 9 annotations (000006 only difficult), ImageSets train/val/test, JPEGs drawn."""
    root = tmp_path / "voc"
    shutil.copytree(TEST_DATA / "voc", root)
    for seed, xml_path in enumerate(sorted((root / "Annotations").glob("*.xml"))):
        annotation = ET.parse(xml_path).getroot()
        width, height = int(annotation.findtext("size/width")), int(annotation.findtext("size/height"))
        write_noise_image(root / "JPEGImages" / annotation.findtext("filename"), width, height, seed=1000 + seed)
    return root


@pytest.fixture
def make_config() -> Callable[..., Config]:
    """Config for a small synthetic run (60 images of 32 px, fast); sections override per test."""

    def build(**sections: dict[str, Any]) -> Config:
        raw: dict[str, Any] = {
            "data": {
                "source": "synthetic",
                "synthetic": {"num_images": 60, "image_size": 32, "object_scales": [0.3, 0.5]},
            },
            "validate": {"min_positives": 1},
        }
        for section, values in sections.items():
            merged = {**raw.get(section, {}), **values}
            if section == "data" and "synthetic" in values:
                merged["synthetic"] = {**raw["data"]["synthetic"], **values["synthetic"]}
            raw[section] = merged
        return config_from_dict(raw)

    return build


# ---------------------------------------------------------------------------------------------
# Serving fixtures (package step, TorchServe handler / server / client): a random resnet18
# baseline at 32 px saved like `mlic train` does, and the best.json `mlic evaluate` writes.
# ---------------------------------------------------------------------------------------------
SERVING_LABELS = ["boat", "sea", "car", "street"]
#: 0.0 and 1.0 make the outcome certain for a random model: "boat" is always chosen, "street" never.
SERVING_THRESHOLDS = [0.0, 0.45, 0.55, 1.0]


def write_chosen_model(root: Path, image_size: int = 32) -> Path:
    """artifacts/models/baseline/ (weights.pt + config.json) and artifacts/best.json under `root`."""
    from dataclasses import replace

    import torch

    from mlic.graph.label_graph import LabelGraph
    from mlic.io import write_json
    from mlic.models.registry import create_model, model_spec
    from mlic.models.saved import save_model
    from mlic.paths import Paths

    torch.manual_seed(0)
    graph = replace(LabelGraph.placeholder(len(SERVING_LABELS), 8), label_names=list(SERVING_LABELS))
    model = create_model("baseline", graph.num_classes, graph, backbone="resnet18")
    paths = Paths(root)
    save_model(paths.model_dir("baseline"), model, model_spec("baseline", graph, "resnet18", image_size, {}))
    write_json(
        paths.best_file,
        {
            "arch": "baseline",
            "model_dir": "artifacts/models/baseline",
            "label_names": SERVING_LABELS,
            "thresholds": SERVING_THRESHOLDS,
            "metrics": {"mAP": 50.0},
        },
    )
    return root


def quick_serving_config() -> Config:
    """Small serving settings; a batch delay long enough to make batches observable."""
    return config_from_dict({"package": {"batch_size": 4, "max_batch_delay_ms": 100}})


@pytest.fixture
def serving_params() -> Config:
    return quick_serving_config()


@pytest.fixture
def chosen_model_root(tmp_path: Path) -> Path:
    """A project root with a trained model and best.json: ready for `mlic package`."""
    return write_chosen_model(tmp_path)


@pytest.fixture(scope="module")
def packaged_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root after `mlic package` (shared by a module's tests: packaging takes seconds)."""
    from mlic.paths import Paths
    from mlic.steps import package

    root = write_chosen_model(tmp_path_factory.mktemp("packaged"))
    package.run(quick_serving_config(), Paths(root))
    return root
