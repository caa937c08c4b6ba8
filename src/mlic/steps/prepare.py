"""prepare step: generate the embedded benchmark or import COCO / VOC, split, write the canonical format.

Output: `data/prepared/{train,val,test}.json` + `labels.json` (+ `images/` for the
synthetic source). The whole folder is built in staging and swapped in at the end, so a failed or
killed run leaves the previous prepared data untouched (or none). Real datasets are not copied:
their `info.image_root` is the absolute path of the user's image folder.

This step checks the *structure* of the source (files present, parsable, consistent ids); the
validate step then opens every image and checks the contents. Relative `data.path` /
`data.image_dir` are taken relative to the project root.

`dvc repro` sees a new version of a dataset only when it lives under `data/raw/` (a dependency of
the prepare stage, filled by `mlic data add` / `mlic data import`); a dataset elsewhere still
works, with a warning that its changes are invisible to DVC.
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
from mlic.data.coco import handle_unlabeled, load_coco, load_coco_splits
from mlic.data.split import SPLIT_NAMES, cap_per_label, carve_val, split_fractions, stratified_split
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
    #: Images without labels left out by `data.coco.unlabeled: drop`.
    unlabeled_dropped: int = 0


@dataclass
class PrepareResult:
    source: str
    output: Path
    split_sizes: dict[str, int]
    num_labels: int
    image_root: str
    capped: int
    unlabeled_dropped: int
    seconds: float

    def summary(self) -> str:
        sizes = ", ".join(f"{split} {count}" for split, count in self.split_sizes.items())
        text = f"prepared {self.source} data: {self.num_labels} labels; images {sizes} → {self.output}"
        text += f" ({self.seconds:.1f} s)"
        if self.capped:
            text += f"\n  {self.capped} training images left out by data.synthetic.max_train_per_label"
        if self.unlabeled_dropped:
            text += f"\n  {self.unlabeled_dropped} images without annotations left out (data.coco.unlabeled: drop)"
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
        log.info(
            "max_train_per_label=%d: kept %d training images, left out %d",
            config.max_train_per_label,
            len(kept),
            capped,
        )
    chosen = {split: [images[i] for i in positions[split]] for split in SPLIT_NAMES}
    synthetic.write_images(
        [image for split in SPLIT_NAMES for image in chosen[split]], staging / "images", config, data.seed
    )
    splits = {split: [image.record(config.image_size) for image in chosen[split]] for split in SPLIT_NAMES}
    return PreparedData(splits, labels, "images", capped)


def _with_carved_val(
    splits: dict[str, list[ImageRecord]], num_labels: int, data: DataConfig
) -> dict[str, list[ImageRecord]]:
    """A published protocol without a val set: take data.split.val of train (stratified, seeded)."""
    train = splits["train"]
    kept, val = carve_val([r.labels for r in train], num_labels, data.split.val, data.seed)
    log.info("val carved from train: %d of %d images (data.split.val %.2f)", len(val), len(train), data.split.val)
    return {**splits, "train": [train[i] for i in kept], "val": [train[i] for i in val]}


def _from_coco(data: DataConfig, paths: Paths, staging: Path) -> PreparedData:
    if isinstance(data.path, dict):
        image_dirs = (
            data.image_dir if isinstance(data.image_dir, dict) else dict.fromkeys(data.path, str(data.image_dir))
        )
        loaded = load_coco_splits(
            {split: _resolve(paths, value) for split, value in data.path.items()},
            {split: _resolve(paths, value) for split, value in image_dirs.items()},
            data.coco.include_crowd,
            data.coco.unlabeled,
        )
        splits = {split: loaded.records.get(split, []) for split in SPLIT_NAMES}
        if "val" not in loaded.records:
            splits = _with_carved_val(splits, loaded.labels.num_classes, data)
        return PreparedData(splits, loaded.labels, str(loaded.image_root), unlabeled_dropped=loaded.unlabeled_dropped)
    instances, image_dir = _resolve(paths, str(data.path)), _resolve(paths, str(data.image_dir))
    records, labels = load_coco(instances, image_dir, data.coco.include_crowd)
    records, dropped = handle_unlabeled(records, data.coco.unlabeled, instances)
    return PreparedData(_split(records, labels.num_classes, data), labels, str(image_dir), unlabeled_dropped=dropped)


def _from_voc(data: DataConfig, paths: Paths, staging: Path) -> PreparedData:
    dataset = load_voc(_resolve(paths, str(data.path)), data.voc.use_difficult, data.voc.image_sets)
    if dataset.predefined_splits is None:
        splits = _split(dataset.records, dataset.labels.num_classes, data)
    else:
        splits = {split: [dataset.records[i] for i in dataset.predefined_splits[split]] for split in SPLIT_NAMES}
        if "val" not in data.voc.image_sets:
            splits = _with_carved_val(splits, dataset.labels.num_classes, data)
    return PreparedData(splits, dataset.labels, str(dataset.image_root))


def _resolve(paths: Paths, value: str) -> Path:
    """A dataset path from params: relative ones are taken from the project root."""
    return (paths.root / value).resolve()


def _dataset_paths(data: DataConfig) -> list[str]:
    values: list[str] = []
    for setting in (data.path, data.image_dir):
        if isinstance(setting, dict):
            values.extend(setting.values())
        elif setting:
            values.append(setting)
    return values


def warn_untracked(data: DataConfig, paths: Paths) -> list[Path]:
    """Warn about (and return) dataset paths outside data/raw/: `dvc repro` cannot see them change."""
    tracked = paths.raw_data.resolve()
    outside = [
        path for path in (_resolve(paths, value) for value in _dataset_paths(data)) if not path.is_relative_to(tracked)
    ]
    for path in outside:
        log.warning(
            "%s is outside %s: `dvc repro` does not see a new version of it; `mlic data add %s` puts it under DVC",
            path,
            paths.raw_data,
            path,
        )
    return outside


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
    warn_untracked(config.data, paths)
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
        unlabeled_dropped=prepared.unlabeled_dropped,
        seconds=time.perf_counter() - started,
    )
