"""Annotation fixtures written to disk: the test datasets' images (drawn, so no binary is
committed) and a COCO 2014-style layout. Plain functions, importable by any test; the fixtures
in conftest.py wrap them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TEST_DATA = Path(__file__).parent / "data"


def write_noise_image(path: Path, width: int, height: int, seed: int) -> Path:
    """A small image with content unique to `seed` (so no two fixture images share a hash)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix == ".png" else "JPEG", quality=95)
    return path


def write_coco_2014(root: Path) -> Path:
    """`root/annotations/instances_{train,val}2014.json` and `root/{train,val}2014/` images, like COCO 2014.

    The first 8 images of tests/data/coco, plus one without annotations (real COCO has ~1% of
    them), are the train file; the last 4 are the val file, which the published protocol reports
    on as the test set.
    """
    payload = json.loads((TEST_DATA / "coco" / "instances.json").read_text())
    all_ids = [image["id"] for image in payload["images"]]
    unlabeled = {"id": max(all_ids) + 1, "file_name": "unlabeled.jpg", "width": 20, "height": 20}
    for ids, folder, extra in ((set(all_ids[:8]), "train2014", [unlabeled]), (set(all_ids[8:]), "val2014", [])):
        images = [image for image in payload["images"] if image["id"] in ids] + extra
        part = {
            **payload,
            "images": images,
            "annotations": [a for a in payload["annotations"] if a["image_id"] in ids],
        }
        instances = root / "annotations" / f"instances_{folder}.json"
        instances.parent.mkdir(parents=True, exist_ok=True)
        instances.write_text(json.dumps(part))
        for image in images:
            write_noise_image(root / folder / image["file_name"], image["width"], image["height"], seed=image["id"])
    return root
