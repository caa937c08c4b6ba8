"""Pascal VOC (`Annotations/*.xml` + `JPEGImages/`) → image-level multi-label records.

Labels are the sorted set of object names. `difficult` objects count only with
`data.voc.use_difficult`; an image whose objects are all difficult is then left out (its labels
are exactly the ambiguous ones, which VOC's own evaluation ignores).

The official splits come from `ImageSets/Main/<name>.txt` (names per split in
`data.voc.image_sets`; a split left out of that mapping comes back empty, and `mlic prepare` then
carves val out of train, e.g. for the published VOC 2007 protocol `{train: trainval, test: test}`).
Without those files `mlic prepare` splits at random.
Some but not all of the configured files is an error rather than a silent change of protocol.

Structure is checked here (parsable XML, a size, at least one named object, boxes with an area
inside the image, listed ids that have an XML); whether the JPEGs exist and decode is the validate
step's job.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from mlic.data.boxes import box_problem
from mlic.data.canonical import ImageRecord, LabelSet
from mlic.data.split import SPLIT_NAMES
from mlic.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_FIX_XML = "repair the annotation (VOC format: <size>, one <object> with <name> per object) or remove the XML"


@dataclass(frozen=True)
class VocObject:
    name: str
    #: [x, y, w, h] from <bndbox>, or None when the object has none.
    box: list[float] | None


@dataclass(frozen=True)
class VocAnnotation:
    stem: str
    file_name: str
    width: int
    height: int
    objects: tuple[VocObject, ...]


@dataclass
class VocDataset:
    records: list[ImageRecord]
    labels: LabelSet
    image_root: Path
    #: Split name → positions in `records`, from ImageSets/Main; None when there are no lists.
    predefined_splits: dict[str, list[int]] | None


def _number(element: ET.Element, path: str, xml_path: Path, field: str) -> float:
    text = element.findtext(path)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(f"missing or not a number (got {text!r})", file=xml_path, field=field, fix=_FIX_XML) from None


def _box(obj: ET.Element, position: int, xml_path: Path, size: tuple[int, int]) -> list[float] | None:
    """[x, y, w, h] from <bndbox>, checked against the image size; None when there is no box."""
    if obj.find("bndbox") is None:
        return None
    xmin, ymin, xmax, ymax = (
        _number(obj, f"bndbox/{key}", xml_path, f"object[{position}]/bndbox/{key}")
        for key in ("xmin", "ymin", "xmax", "ymax")
    )
    box = [xmin, ymin, xmax - xmin, ymax - ymin]
    problem = box_problem(box, *size)
    if problem:
        raise DataError(
            f"object {position} ({obj.findtext('name')}): {problem} (from xmin, ymin, xmax, ymax)",
            file=xml_path,
            field=f"object[{position}]/bndbox",
            fix="correct the box (xmin < xmax, ymin < ymax, inside <size>) or remove the object",
        )
    return box


def parse_annotation(xml_path: Path, use_difficult: bool) -> VocAnnotation:
    """One XML file; DataError naming the file and element when it is malformed or has no objects."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"malformed XML ({exc})", file=xml_path, field="xml", fix=_FIX_XML) from None
    elements = root.findall("object")
    if not elements:
        raise DataError(
            "no <object> elements: the image would have no labels",
            file=xml_path,
            field="object",
            fix="annotate its objects, or remove the XML (and its ImageSets entries)",
        )
    width = int(_number(root, "size/width", xml_path, "size/width"))
    height = int(_number(root, "size/height", xml_path, "size/height"))
    objects = []
    for position, obj in enumerate(elements):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError("object without a <name>", file=xml_path, field=f"object[{position}]/name", fix=_FIX_XML)
        if (obj.findtext("difficult") or "0").strip() == "1" and not use_difficult:
            continue
        objects.append(VocObject(name, _box(obj, position, xml_path, (width, height))))
    return VocAnnotation(
        stem=xml_path.stem,
        file_name=(root.findtext("filename") or f"{xml_path.stem}.jpg").strip(),
        width=width,
        height=height,
        objects=tuple(objects),
    )


def _read_list(path: Path) -> list[str]:
    """Image ids of an ImageSets list (first token per line: class lists carry a flag after it)."""
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_image_sets(root: Path, image_sets: dict[str, str]) -> dict[str, list[str]] | None:
    """Split → image ids from ImageSets/Main (each with an XML), or None when no configured list exists."""
    unknown = set(image_sets) - set(SPLIT_NAMES)
    if unknown:
        raise ConfigError(
            f"unknown split(s) {sorted(unknown)}",
            field="data.voc.image_sets",
            fix=f"use keys among {list(SPLIT_NAMES)}",
        )
    files = {split: root / "ImageSets" / "Main" / f"{name}.txt" for split, name in image_sets.items()}
    missing = [split for split, path in files.items() if not path.is_file()]
    if len(missing) == len(files):
        return None
    if missing:
        raise DataError(
            "this ImageSets list is missing while others are present",
            file=files[missing[0]],
            field=f"data.voc.image_sets.{missing[0]}",
            fix="add the list, map the split to an existing list in data.voc.image_sets (or leave it out), "
            "or remove the lists to split at random",
        )
    listed = {split: _read_list(path) for split, path in files.items()}
    for split, stems in listed.items():
        for line, stem in enumerate(stems, start=1):
            if not (root / "Annotations" / f"{stem}.xml").is_file():
                raise DataError(
                    f"image id {stem!r} has no Annotations/{stem}.xml",
                    file=files[split],
                    field=f"line {line}",
                    fix="remove the id from the list or add its annotation",
                )
    return listed


def _annotation_files(root: Path, listed: dict[str, list[str]] | None) -> list[Path]:
    annotations = root / "Annotations"
    if listed is None:
        files = sorted(annotations.glob("*.xml"))
        if not files:
            raise DataError("no *.xml files", file=annotations, field="data.path", fix="point data.path at a VOC root")
        return files
    return [annotations / f"{stem}.xml" for stem in sorted({stem for stems in listed.values() for stem in stems})]


def load_voc(root: Path, use_difficult: bool, image_sets: dict[str, str]) -> VocDataset:
    """Parse the annotations (only those listed in ImageSets when the lists exist)."""
    for folder in (root, root / "Annotations", root / "JPEGImages"):
        if not folder.is_dir():
            raise DataError(
                "folder not found",
                file=folder,
                field="data.path",
                fix="point data.path at a VOC root (Annotations/, JPEGImages/)",
            )
    listed = read_image_sets(root, image_sets)
    parsed = [parse_annotation(path, use_difficult) for path in _annotation_files(root, listed)]
    kept = [annotation for annotation in parsed if annotation.objects]
    if len(kept) < len(parsed):
        log.info(
            "VOC: left out %d image(s) whose objects are all difficult (data.voc.use_difficult)",
            len(parsed) - len(kept),
        )
    names = sorted({obj.name for annotation in kept for obj in annotation.objects})
    index_of = {name: index for index, name in enumerate(names)}
    records = [
        ImageRecord(
            id=image_id,
            file_name=annotation.file_name,
            width=annotation.width,
            height=annotation.height,
            labels=sorted({index_of[obj.name] for obj in annotation.objects}),
            boxes=[(index_of[obj.name], obj.box) for obj in annotation.objects if obj.box is not None],
        )
        for image_id, annotation in enumerate(kept, start=1)
    ]
    position_of = {annotation.stem: position for position, annotation in enumerate(kept)}
    predefined = None
    if listed is not None:
        predefined = {
            split: [position_of[stem] for stem in stems if stem in position_of] for split, stems in listed.items()
        }
        predefined.update({split: [] for split in SPLIT_NAMES if split not in predefined})
    log.info(
        "VOC %s: %d images, %d labels, splits from %s",
        root,
        len(records),
        len(names),
        "ImageSets" if listed else "random",
    )
    return VocDataset(
        records, LabelSet(names=names, source_ids=list(names)), (root / "JPEGImages").resolve(), predefined
    )
