"""`mlic data generate`: the built-in benchmark as a COCO dataset, with labels missed on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mlic.config import SyntheticConfig
from mlic.data import synthetic
from mlic.data.generate import INSTANCES_FILE, generate
from mlic.errors import ConfigError

SMALL = SyntheticConfig(num_images=40, image_size=48)


def instances(folder: Path) -> dict:
    return json.loads((folder / INSTANCES_FILE).read_text(encoding="utf-8"))


def test_every_object_is_a_coco_annotation_with_its_box(tmp_path: Path) -> None:
    result = generate(tmp_path / "v2", SMALL, seed=3)
    payload = instances(tmp_path / "v2")
    layouts = synthetic.sample_images(SMALL, 3)
    assert result.dropped == 0 and result.annotations == sum(len(image.objects) for image in layouts)
    assert [c["name"] for c in payload["categories"]] == synthetic.label_set().names
    assert min(c["id"] for c in payload["categories"]) == 1  # COCO's ids start at 1
    first = payload["annotations"][0]
    obj = layouts[0].objects[0]
    assert first["image_id"] == layouts[0].index and first["category_id"] == obj.category + 1
    assert first["bbox"] == pytest.approx(list(obj.box), abs=0.01)
    assert len({a["id"] for a in payload["annotations"]}) == len(payload["annotations"])
    for image in payload["images"]:
        with Image.open(tmp_path / "v2" / "images" / image["file_name"]) as picture:
            assert picture.size == (image["width"], image["height"]) == (48, 48)


def test_missed_labels_are_dropped_on_the_same_images_and_a_new_version_replaces_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "benchmark"
    missed = generate(folder, SMALL, seed=3, missing_labels=0.4)
    v1 = instances(folder)
    pixels_v1 = (folder / "images" / v1["images"][0]["file_name"]).read_bytes()
    (folder / "stray.txt").write_text("from an older version")
    fixed = generate(folder, SMALL, seed=3)
    v2 = instances(folder)
    assert missed.dropped + missed.annotations == fixed.annotations
    assert 0.25 < missed.dropped / fixed.annotations < 0.55  # 40% of them, give or take the draw
    assert v1["images"] == v2["images"]  # the same images: only the labels changed
    assert (folder / "images" / v1["images"][0]["file_name"]).read_bytes() == pixels_v1
    kept = {(a["image_id"], a["category_id"], tuple(a["bbox"])) for a in v1["annotations"]}
    assert kept <= {(a["image_id"], a["category_id"], tuple(a["bbox"])) for a in v2["annotations"]}
    assert not (folder / "stray.txt").exists()  # replaced whole


def test_a_fraction_outside_zero_to_one_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--missing-labels"):
        generate(tmp_path / "benchmark", SMALL, seed=0, missing_labels=1.0)
    assert not (tmp_path / "benchmark").exists()
