"""The canonical format between steps: COCO JSON per split plus `labels.json`.

Every importer produces it, every later step reads only it. Conventions:
- category ids in the split files are the label *indices* 0..C-1 (order of `labels.json` names);
  the source dataset's own ids are kept in `labels.json` as `source_id` (COCO ids are not
  contiguous).
- `info.image_root` says where `file_name`s live: relative to the split file's folder, or absolute
  (real datasets stay where the user put them, tracked by their own `.dvc` file).
- image-level labels are the distinct categories of an image's annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlic.errors import DataError
from mlic.io import read_json, write_json

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ImageRecord:
    """One image and its image-level labels (indices into the label list)."""

    id: int
    file_name: str
    width: int
    height: int
    labels: list[int]
    #: Optional boxes as (label index, [x, y, w, h]) in pixels: unused by training; the pointing game
    #: checks label attention against them.
    boxes: list[tuple[int, list[float]]] = field(default_factory=list)


@dataclass
class LabelSet:
    names: list[str]
    source_ids: list[Any]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_json(self, source: str) -> dict[str, Any]:
        return {
            "source": source,
            "names": self.names,
            "categories": [
                {"index": index, "name": name, "source_id": source_id}
                for index, (name, source_id) in enumerate(zip(self.names, self.source_ids, strict=True))
            ],
        }


@dataclass
class PreparedSplit:
    name: str
    records: list[ImageRecord]
    image_root: Path  # resolved, absolute

    def image_path(self, record: ImageRecord) -> Path:
        return self.image_root / record.file_name


def split_to_coco(
    records: list[ImageRecord], labels: LabelSet, image_root: str, split: str, source: str
) -> dict[str, Any]:
    """Build the COCO JSON of one split (one annotation per image-label, plus boxes when known)."""
    annotations: list[dict[str, Any]] = []
    for record in records:
        boxed = {label for label, _ in record.boxes}
        for label, bbox in record.boxes:
            annotations.append(
                {"image_id": record.id, "category_id": label, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}
            )
        for label in sorted(set(record.labels) - boxed):
            annotations.append({"image_id": record.id, "category_id": label, "iscrowd": 0})
    for ann_id, annotation in enumerate(annotations, start=1):
        annotation["id"] = ann_id
    return {
        "info": {"image_root": image_root, "split": split, "source": source},
        "images": [{"id": r.id, "file_name": r.file_name, "width": r.width, "height": r.height} for r in records],
        "categories": [{"id": index, "name": name} for index, name in enumerate(labels.names)],
        "annotations": annotations,
    }


def write_prepared(
    target: Path, splits: dict[str, list[ImageRecord]], labels: LabelSet, image_root: str, source: str
) -> None:
    """Write labels.json and one COCO JSON per split into `target` (a staging folder)."""
    write_json(target / "labels.json", labels.to_json(source))
    for split, records in splits.items():
        write_json(target / f"{split}.json", split_to_coco(records, labels, image_root, split, source))


def load_labels(path: Path) -> LabelSet:
    payload = read_json(path, what="labels file")
    try:
        categories = sorted(payload["categories"], key=lambda c: c["index"])
        return LabelSet(names=[c["name"] for c in categories], source_ids=[c.get("source_id") for c in categories])
    except (KeyError, TypeError) as exc:
        raise DataError(f"labels file lacks {exc}", file=path, field="categories", fix="re-run `mlic prepare`") from exc


def load_split(path: Path) -> PreparedSplit:
    """Read one canonical split file into records with label lists."""
    payload = read_json(path, what="prepared split")
    try:
        image_root = Path(payload["info"]["image_root"])
        if not image_root.is_absolute():
            image_root = (path.parent / image_root).resolve()
        labels_of: dict[int, set[int]] = {}
        boxes_of: dict[int, list[tuple[int, list[float]]]] = {}
        for annotation in payload["annotations"]:
            label = int(annotation["category_id"])
            labels_of.setdefault(annotation["image_id"], set()).add(label)
            if len(annotation.get("bbox") or []) == 4:
                boxes_of.setdefault(annotation["image_id"], []).append((label, [float(v) for v in annotation["bbox"]]))
        records = [
            ImageRecord(
                id=int(image["id"]),
                file_name=image["file_name"],
                width=int(image["width"]),
                height=int(image["height"]),
                labels=sorted(labels_of.get(image["id"], set())),
                boxes=boxes_of.get(image["id"], []),
            )
            for image in payload["images"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"prepared split is malformed ({exc!r})", file=path, fix="re-run `mlic prepare`") from exc
    return PreparedSplit(name=payload["info"].get("split", path.stem), records=records, image_root=image_root)
