"""VOC import: labels, difficult objects, ImageSets splits, and structure errors naming file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlic.data.voc import load_voc
from mlic.errors import ConfigError, DataError

SETS = {"train": "train", "val": "val", "test": "test"}


def _stems(dataset, split: str) -> list[str]:
    return [dataset.records[i].file_name.removesuffix(".jpg") for i in dataset.predefined_splits[split]]


def test_imagesets_give_the_splits_and_all_difficult_images_are_left_out(voc_root: Path) -> None:
    dataset = load_voc(voc_root, use_difficult=False, image_sets=SETS)
    assert dataset.labels.names == ["boat", "dog", "person"]
    assert dataset.image_root == (voc_root / "JPEGImages").resolve()
    assert _stems(dataset, "train") == ["000001", "000002", "000003", "000004", "000005"]  # 000006: difficult only
    assert _stems(dataset, "val") == ["000007"] and _stems(dataset, "test") == ["000008", "000009"]
    by_file = {record.file_name: record for record in dataset.records}
    assert by_file["000004.jpg"].labels == [0]  # its person is difficult
    assert by_file["000002.jpg"].boxes == [(1, [3.0, 4.0, 12.0, 16.0]), (2, [8.0, 4.0, 12.0, 16.0])]
    assert len({record.id for record in dataset.records}) == len(dataset.records)


def test_use_difficult_keeps_difficult_objects(voc_root: Path) -> None:
    dataset = load_voc(voc_root, use_difficult=True, image_sets=SETS)
    by_file = {record.file_name: record for record in dataset.records}
    assert by_file["000004.jpg"].labels == [0, 2] and by_file["000006.jpg"].labels == [2]


def test_without_imagesets_there_is_no_predefined_split(voc_root: Path) -> None:
    shutil.rmtree(voc_root / "ImageSets")
    dataset = load_voc(voc_root, use_difficult=False, image_sets=SETS)
    assert dataset.predefined_splits is None and len(dataset.records) == 8


def test_a_split_left_out_of_the_mapping_stays_empty(voc_root: Path) -> None:
    dataset = load_voc(voc_root, use_difficult=False, image_sets={"train": "train", "test": "test"})
    assert dataset.predefined_splits["val"] == [] and len(dataset.predefined_splits["test"]) == 2


def test_some_but_not_all_lists_is_an_error_naming_the_missing_one(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Main" / "val.txt").unlink()
    with pytest.raises(DataError, match="missing while others are present") as caught:
        load_voc(voc_root, use_difficult=False, image_sets=SETS)
    assert caught.value.file.endswith("val.txt") and caught.value.field == "data.voc.image_sets.val"


def test_a_listed_id_without_annotation_names_list_and_line(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Main" / "test.txt").write_text("000008\n000042\n")
    with pytest.raises(DataError, match="'000042' has no Annotations/000042.xml") as caught:
        load_voc(voc_root, use_difficult=False, image_sets=SETS)
    assert caught.value.file.endswith("test.txt") and caught.value.field == "line 2"


def test_unknown_split_in_the_mapping_is_a_config_error(voc_root: Path) -> None:
    with pytest.raises(ConfigError, match="unknown split"):
        load_voc(voc_root, use_difficult=False, image_sets={"training": "train"})


NO_OBJECTS = "<annotation><filename>000003.jpg</filename><size><width>40</width><height>30</height></size></annotation>"
BROKEN_XML = {
    "no objects": (NO_OBJECTS, "object", "no <object> elements"),
    "malformed": ("<annotation><size><width>40</width></annotation", "xml", "malformed XML"),
    "no size": ("<annotation><object><name>dog</name></object></annotation>", "size/width", "missing or not a number"),
    "nameless object": (
        "<annotation><size><width>4</width><height>3</height></size><object><difficult>0</difficult></object></annotation>",
        "object[0]/name",
        "without a <name>",
    ),
    "bad box": (
        "<annotation><size><width>4</width><height>3</height></size>"
        "<object><name>dog</name><bndbox><xmin>a</xmin></bndbox></object></annotation>",
        "object[0]/bndbox/xmin",
        "not a number",
    ),
    "box without area": (
        (
            "<annotation><size><width>40</width><height>30</height></size><object><name>dog</name>"
            "<bndbox><xmin>20</xmin><ymin>5</ymin><xmax>12</xmax><ymax>25</ymax></bndbox></object></annotation>"
        ),
        "object[0]/bndbox",
        r"object 0 \(dog\): box \[x, y, width, height\] = \[20.0, 5.0, -8.0, 20.0\] has no area",
    ),
    "box outside the image": (
        (
            "<annotation><size><width>40</width><height>30</height></size><object><name>dog</name>"
            "<bndbox><xmin>50</xmin><ymin>5</ymin><xmax>60</xmax><ymax>25</ymax></bndbox></object></annotation>"
        ),
        "object[0]/bndbox",
        "reaches outside its 40×30 image",
    ),
}


@pytest.mark.parametrize("case", BROKEN_XML, ids=list(BROKEN_XML))
def test_broken_xml_names_file_and_element(voc_root: Path, case: str) -> None:
    text, field, message = BROKEN_XML[case]
    broken = voc_root / "Annotations" / "000003.xml"
    broken.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        load_voc(voc_root, use_difficult=False, image_sets=SETS)
    assert caught.value.file == str(broken) and caught.value.field == field and caught.value.fix


def test_missing_root_or_folders_name_data_path(voc_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found") as caught:
        load_voc(tmp_path / "nowhere", use_difficult=False, image_sets=SETS)
    assert caught.value.field == "data.path"
    shutil.rmtree(voc_root / "JPEGImages")
    with pytest.raises(DataError, match="folder not found") as caught:
        load_voc(voc_root, use_difficult=False, image_sets=SETS)
    assert caught.value.file == str(voc_root / "JPEGImages")
