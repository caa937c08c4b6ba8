"""COCO instances JSON → image-level multi-label records, through pycocotools.

Image-level labels are the distinct categories of an image's annotations (crowd annotations
count only with `data.coco.include_crowd`). COCO category ids are not contiguous (1..90 for 80
classes): they are mapped to indices 0..C-1 in id order, and the ids are kept in labels.json.

This module checks the *structure* (the JSON parses, required keys and types, ids unique, every
annotation points at a known image and category, boxes have an area and lie inside their image)
and names the offending entry. Whether the image files exist and decode is the validate step's
job: it reads every file anyway.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from mlic.data.boxes import box_problem
from mlic.data.canonical import ImageRecord, LabelSet
from mlic.errors import DataError
from mlic.io import read_json

log = logging.getLogger(__name__)

_FIX_FORMAT = "export the annotations in COCO instances format (images, annotations, categories)"
#: Required keys of each entry and their JSON types.
_REQUIRED: dict[str, dict[str, type]] = {
    "images": {"id": int, "file_name": str, "width": int, "height": int},
    "annotations": {"id": int, "image_id": int, "category_id": int},
    "categories": {"id": int, "name": str},
}


def _check_entries(payload: Any, path: Path) -> None:
    """Each section is a list of objects with the required keys and types; ids are unique."""
    if not isinstance(payload, dict):
        raise DataError("top level is not a JSON object", file=path, fix=_FIX_FORMAT)
    for section, required in _REQUIRED.items():
        entries = payload.get(section)
        if not isinstance(entries, list):
            raise DataError(f"'{section}' is missing or not a list", file=path, field=section, fix=_FIX_FORMAT)
        seen: set[int] = set()
        for position, entry in enumerate(entries):
            where = f"{section}[{position}]"
            if not isinstance(entry, dict):
                raise DataError("entry is not an object", file=path, field=where, fix=_FIX_FORMAT)
            for key, kind in required.items():
                value = entry.get(key)
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise DataError(
                        f"'{key}' is missing or not {kind.__name__} (got {value!r})",
                        file=path,
                        field=f"{where}.{key}",
                        fix=_FIX_FORMAT,
                    )
            if entry["id"] in seen:
                raise DataError(
                    f"duplicate id {entry['id']}",
                    file=path,
                    field=f"{where}.id",
                    fix=f"give every entry of '{section}' its own id",
                )
            seen.add(entry["id"])


def _check_references(payload: dict[str, Any], path: Path) -> None:
    image_ids = {image["id"] for image in payload["images"]}
    category_ids = {category["id"] for category in payload["categories"]}
    for position, annotation in enumerate(payload["annotations"]):
        if annotation["category_id"] not in category_ids:
            raise DataError(
                f"annotation {annotation['id']} has unknown category id {annotation['category_id']} "
                f"(known: {sorted(category_ids)})",
                file=path,
                field=f"annotations[{position}].category_id",
                fix="add the category to 'categories' or drop the annotation",
            )
        if annotation["image_id"] not in image_ids:
            raise DataError(
                f"annotation {annotation['id']} points at unknown image id {annotation['image_id']}",
                file=path,
                field=f"annotations[{position}].image_id",
                fix="add the image to 'images' or drop the annotation",
            )


def _check_boxes(payload: dict[str, Any], path: Path) -> None:
    """Every bbox given (an empty or missing one means none) is sound; all bad ones named at once."""
    sizes = {image["id"]: (image["width"], image["height"]) for image in payload["images"]}
    bad = []
    for position, annotation in enumerate(payload["annotations"]):
        bbox = annotation.get("bbox")
        problem = None if bbox in (None, []) else box_problem(bbox, *sizes[annotation["image_id"]])
        if problem:
            bad.append((position, f"annotation {annotation['id']} (image {annotation['image_id']}): {problem}"))
    if bad:
        more = ""
        if len(bad) > 1:
            more = f"; {len(bad) - 1} more bad box(es), the next: " + "; ".join(text for _, text in bad[1:6])
        raise DataError(
            bad[0][1] + more,
            file=path,
            field=f"annotations[{bad[0][0]}].bbox",
            fix="correct the box ([x, y, width, height] in pixels, inside the image) or drop the annotation",
        )


def _index(payload: dict[str, Any]) -> COCO:
    """A pycocotools index over an already parsed payload, without its prints on stdout."""
    coco = COCO()
    coco.dataset = payload
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco(instances: Path, image_dir: Path, include_crowd: bool) -> tuple[list[ImageRecord], LabelSet]:
    """Records (in the file's image order, COCO image ids kept) and the label set."""
    if not instances.is_file():
        raise DataError(
            "COCO instances file not found",
            file=instances,
            field="data.path",
            fix="point data.path at instances_*.json",
        )
    if not image_dir.is_dir():
        raise DataError(
            "COCO image folder not found",
            file=image_dir,
            field="data.image_dir",
            fix="point data.image_dir at the images",
        )
    payload = read_json(instances, what="COCO instances file")
    _check_entries(payload, instances)
    _check_references(payload, instances)
    _check_boxes(payload, instances)
    coco = _index(payload)

    category_ids = sorted(coco.getCatIds())
    index_of = {category_id: index for index, category_id in enumerate(category_ids)}
    labels = LabelSet(names=[coco.cats[c]["name"] for c in category_ids], source_ids=category_ids)
    records = []
    skipped_crowd = 0
    for image_id in coco.getImgIds():
        image = coco.imgs[image_id]
        annotations = coco.imgToAnns.get(image_id, [])
        kept = [a for a in annotations if include_crowd or not a.get("iscrowd", 0)]
        skipped_crowd += len(annotations) - len(kept)
        records.append(
            ImageRecord(
                id=image_id,
                file_name=image["file_name"],
                width=image["width"],
                height=image["height"],
                labels=sorted({index_of[a["category_id"]] for a in kept}),
                boxes=[(index_of[a["category_id"]], list(a["bbox"])) for a in kept if len(a.get("bbox") or []) == 4],
            )
        )
    log.info(
        "COCO %s: %d images, %d categories, %d annotations (%d crowd annotations left out)",
        instances.name,
        len(records),
        len(category_ids),
        len(payload["annotations"]),
        skipped_crowd,
    )
    return records, labels


def handle_unlabeled(records: list[ImageRecord], mode: str, instances: Path) -> tuple[list[ImageRecord], int]:
    """Apply `data.coco.unlabeled` to images without labels; returns (records kept, number dropped).

    Real COCO has such images (about 1% of train2017): they carry no label to learn or score, and
    validate rejects them by default, so dropping them (and saying how many) is the default.
    """
    unlabeled = [record for record in records if not record.labels]
    if not unlabeled or mode == "keep":
        return records, 0
    if mode == "error":
        raise DataError(
            f"{len(unlabeled)} image(s) have no annotation, e.g. image id {unlabeled[0].id} ({unlabeled[0].file_name})",
            file=instances,
            field="data.coco.unlabeled",
            fix="set data.coco.unlabeled to drop (leave them out) or keep (with validate.allow_unlabeled: true)",
        )
    log.info(
        "COCO %s: dropped %d image(s) without annotations (data.coco.unlabeled: drop)", instances.name, len(unlabeled)
    )
    return [record for record in records if record.labels], len(unlabeled)


def _category_difference(first: LabelSet, other: LabelSet) -> str:
    """Which categories (id and name) one file has and the other lacks: with 80 of them, the
    message must point at the few that differ rather than say only that they do."""
    in_first, in_other = (set(zip(each.source_ids, each.names, strict=True)) for each in (first, other))

    def listed(categories: set[tuple[Any, str]]) -> str:
        return ", ".join(f"{category_id} {name!r}" for category_id, name in sorted(categories)) or "none"

    return f"only in that one: {listed(in_first - in_other)}; only in this one: {listed(in_other - in_first)}"


@dataclass
class CocoSplits:
    """Records per published split file, one label set, one folder all image paths are relative to."""

    records: dict[str, list[ImageRecord]]
    labels: LabelSet
    image_root: Path
    unlabeled_dropped: int


def load_coco_splits(
    instances: dict[str, Path], image_dirs: dict[str, Path], include_crowd: bool, unlabeled: str
) -> CocoSplits:
    """One instances file per split (COCO 2014: train on train2014, report on val2014).

    Every file must list the same categories, so a label index means one thing in every split;
    image ids must not repeat across files. Each split's images may live in their own folder
    (train2014/, val2014/): file names become relative to the folders' common parent.
    """
    root = Path(os.path.commonpath([str(folder) for folder in image_dirs.values()]))
    records: dict[str, list[ImageRecord]] = {}
    labels: LabelSet | None = None
    first: Path | None = None
    owner: dict[int, Path] = {}
    dropped = 0
    for split, path in instances.items():
        split_records, split_labels = load_coco(path, image_dirs[split], include_crowd)
        if labels is None:
            labels, first = split_labels, path
        elif (split_labels.names, split_labels.source_ids) != (labels.names, labels.source_ids):
            raise DataError(
                f"its categories differ from those of {first} ({_category_difference(labels, split_labels)})",
                file=path,
                field="categories",
                fix="use instances files of the same COCO release (the same 80 categories) for every split",
            )
        for record in split_records:
            if record.id in owner:
                raise DataError(
                    f"image id {record.id} is also in {owner[record.id]}",
                    file=path,
                    field=f"data.path.{split}",
                    fix="give each split its own images (COCO's train and val files never share one)",
                )
            owner[record.id] = path
        kept, count = handle_unlabeled(split_records, unlabeled, path)
        dropped += count
        prefix = image_dirs[split].relative_to(root)
        records[split] = [replace(record, file_name=str(prefix / record.file_name)) for record in kept]
    assert labels is not None  # the config requires train and test
    return CocoSplits(records, labels, root, dropped)
