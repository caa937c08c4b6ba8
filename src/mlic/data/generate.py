"""The embedded benchmark written out as a COCO dataset (`mlic data generate`): data to version.

The synthetic source draws its images inside `prepare`, so it has no files for DVC to track. This
writes the same scenes as what a user brings, an instances JSON and an image folder, so the data
version workflow (`mlic data add`, a new version, `dvc repro`, `dvc metrics diff`, `mlic report`)
can be tried and tested end to end without downloading anything.

A version differs the way real ones do: `missing_labels` drops that fraction of the annotations
(an annotator who missed objects), and a later version with 0 puts them back on the same images.
Image ids, file names and pixels depend only on the seed. The splits do not stay put: prepare
stratifies them on the labels, and an image whose every object was missed is dropped (COCO's
unlabeled images, `data.coco.unlabeled`), so fixing labels moves some images between splits. A
comparison of the two versions' test figures is one of data versions, not of the same test images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlic.config import SyntheticConfig
from mlic.data import synthetic
from mlic.data.split import seeded_rng
from mlic.errors import ConfigError
from mlic.io import atomic_dir

#: Where the instances file and the images go inside the dataset folder (`mlic data add` options).
INSTANCES_FILE, IMAGE_FOLDER = "instances.json", "images"
#: The random stream of the dropped annotations (synthetic.py uses 0 and 1 for layouts and pixels).
_MISSING_STREAM = 2


@dataclass(frozen=True)
class GenerateResult:
    folder: Path
    images: int
    annotations: int
    dropped: int

    def summary(self) -> str:
        missed = f", {self.dropped} left out as missed labels" if self.dropped else ""
        return (
            f"{self.folder}: {self.images} images, {self.annotations} annotations{missed} "
            f"(COCO: {INSTANCES_FILE} and {IMAGE_FOLDER}/)"
        )


def coco_payload(
    images: list[synthetic.SyntheticImage], config: SyntheticConfig, seed: int, missing_labels: float
) -> tuple[dict, int]:
    """The COCO instances of `images`, with `missing_labels` of the annotations dropped (seeded),
    and how many were dropped. Category ids start at 1, as in COCO."""
    rng = seeded_rng(seed, _MISSING_STREAM)
    annotations, dropped = [], 0
    for image in images:
        for obj in image.objects:
            if rng.random() < missing_labels:
                dropped += 1
                continue
            x, y, width, height = (round(value, 2) for value in obj.box)
            annotations.append(
                {
                    "id": len(annotations) + dropped + 1,
                    "image_id": image.index,
                    "category_id": obj.category + 1,
                    "bbox": [x, y, width, height],
                    "area": round(width * height, 2),
                    "iscrowd": 0,
                }
            )
    payload = {
        "info": {"description": f"mlic embedded benchmark, seed {seed}, missing_labels {missing_labels}"},
        "images": [
            {"id": image.index, "file_name": image.file_name, "width": config.image_size, "height": config.image_size}
            for image in images
        ],
        "annotations": annotations,
        "categories": [
            {"id": index + 1, "name": category.name, "supercategory": "object"}
            for index, category in enumerate(synthetic.CATEGORIES)
        ],
    }
    return payload, dropped


def generate(folder: Path, config: SyntheticConfig, seed: int, missing_labels: float = 0.0) -> GenerateResult:
    """Write (or replace, whole) `folder` with the benchmark as COCO."""
    if not 0.0 <= missing_labels < 1.0:
        raise ConfigError(
            f"missing_labels is {missing_labels}", field="--missing-labels", fix="give a fraction in [0, 1)"
        )
    images = synthetic.sample_images(config, seed)
    payload, dropped = coco_payload(images, config, seed, missing_labels)
    with atomic_dir(folder) as staging:
        synthetic.write_images(images, staging / IMAGE_FOLDER, config, seed)
        (staging / INSTANCES_FILE).write_text(json.dumps(payload), encoding="utf-8")
    return GenerateResult(folder, len(images), len(payload["annotations"]), dropped)
