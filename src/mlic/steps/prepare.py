"""prepare step: generate the embedded benchmark or import COCO / VOC, split, write the canonical format.

Output: `data/prepared/{train,val,test}.json` + `labels.json` (+ `images/` for the
synthetic source). The whole folder is built in staging and swapped in at the end, so a failed or
killed run leaves the previous prepared data untouched (or none). Real datasets are not copied:
their `info.image_root` is the absolute path of the user's image folder.

This step checks the *structure* of the source (files present, parsable, consistent ids); the
validate step then opens every image and checks the contents. Relative `data.path` /
`data.image_dir` are taken relative to the project root.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlic.config import Config, DataConfig
from mlic.data import synthetic
from mlic.data.canonical import ImageRecord, LabelSet, write_prepared
from mlic.data.coco import load_coco
from mlic.data.split import SPLIT_NAMES, cap_per_label, split_fractions, stratified_split
from mlic.data.voc import load_voc
from mlic.io import atomic_dir
from mlic.paths import Paths

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """What a source hands to the writer."""

    splits: dict[str, list[ImageRecord]]
    labels: LabelSet
    #: Where file_names live: relative to the prepared folder, or absolute.
    image_root: str
    #: Training images left out by `data.synthetic.max_train_per_label`.
    capped: int = 0


@dataclass
class PrepareResult:
    source: str
    output: Path
    split_sizes: dict[str, int]
    num_labels: int
    image_root: str
    capped: int
    seconds: float

    def summary(self) -> str:
        sizes = ", ".join(f"{split} {count}" for split, count in self.split_sizes.items())
        text = f"prepared {self.source} data: {self.num_labels} labels; images {sizes} → {self.output} ({self.seconds:.1f} s)"
        if self.capped:
            text += f"\n  {self.capped} training images left out by data.synthetic.max_train_per_label"
        return text


def _split(records: list[ImageRecord], num_labels: int, data: DataConfig) -> dict[str, list[ImageRecord]]:
    positions = stratified_split([r.labels for r in records], num_labels, split_fractions(data.split), data.seed)
    return {split: [records[i] for i in positions[split]] for split in SPLIT_NAMES}


def _from_synthetic(data: DataConfig, paths: Paths, staging: Path) -> PreparedData:
    """Layouts first (cheap), then split and cap, then draw only the images that are kept."""
    config = data.synthetic
    images = synthetic.sample_images(config, data.seed)
    labels = synthetic.label_set()
    label_lists = [image.labels for image in images]
    positions = stratified_split(label_lists, labels.num_classes, split_fractions(data.split), data.seed)
    capped = 0
    if config.max_train_per_label is not None:
        kept = cap_per_label(positions["train"], label_lists, config.max_train_per_label, data.seed)
        capped = len(positions["train"]) - len(kept)
        positions["train"] = kept
        log.info("max_train_per_label=%d: kept %d training images, left out %d", config.max_train_per_label, len(kept), capped)
    chosen = {split: [images[i] for i in positions[split]] for split in SPLIT_NAMES}
    synthetic.write_images([image for split in SPLIT_NAMES for image in chosen[split]], staging / "images", config, data.seed)
    splits = {split: [image.record(config.image_size) for image in chosen[split]] for split in SPLIT_NAMES}
    return PreparedData(splits, labels, "images", capped)


def _from_coco(data: DataConfig, paths: Paths, staging: Path) -> PreparedData:
    image_dir = (paths.root / str(data.image_dir)).resolve()
    records, labels = load_coco((paths.root / str(data.path)).resolve(), image_dir, data.coco.include_crowd)
    return PreparedData(_split(records, labels.num_classes, data), labels, str(image_dir))


def _from_voc(data: DataConfig, paths: Paths, staging: Path) -> PreparedData:
    dataset = load_voc((paths.root / str(data.path)).resolve(), data.voc.use_difficult, data.voc.image_sets)
    if dataset.predefined_splits is None:
        splits = _split(dataset.records, dataset.labels.num_classes, data)
    else:
        splits = {split: [dataset.records[i] for i in dataset.predefined_splits[split]] for split in SPLIT_NAMES}
    return PreparedData(splits, dataset.labels, str(dataset.image_root))


SOURCES: dict[str, Callable[[DataConfig, Paths, Path], PreparedData]] = {
    "synthetic": _from_synthetic,
    "coco": _from_coco,
    "voc": _from_voc,
}


def run(config: Config, paths: Paths) -> PrepareResult:
    """Build data/prepared/ for `config.data.source`; raises DataError naming file and field."""
    started = time.perf_counter()
    source = config.data.source
    log.info("preparing %s data into %s", source, paths.prepared)
    with atomic_dir(paths.prepared) as staging:
        prepared = SOURCES[source](config.data, paths, staging)
        write_prepared(staging, prepared.splits, prepared.labels, prepared.image_root, source)
    return PrepareResult(
        source=source,
        output=paths.prepared,
        split_sizes={split: len(records) for split, records in prepared.splits.items()},
        num_labels=prepared.labels.num_classes,
        image_root=prepared.image_root,
        capped=prepared.capped,
        seconds=time.perf_counter() - started,
    )
