"""Step 6 — package: the model evaluate chose → a TorchServe archive and its config.properties.

Reads `artifacts/best.json` (arch, model_dir, label_names, thresholds, metrics) and writes
`artifacts/serving/` whole or not at all: the folder is built in staging, the archive is
unpacked and made to answer a real image through its own handler, and only then swapped in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlic.config import Config
from mlic.errors import DataError, ServingError
from mlic.io import atomic_dir, read_json
from mlic.models.saved import load_spec
from mlic.paths import Paths
from mlic.serving.archive import build_archive, serving_properties, verify_archive, write_properties
from mlic.serving.predictor import valid_thresholds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageResult:
    arch: str
    model_name: str
    version: str
    archive: Path
    config_properties: Path
    num_labels: int
    probe_answer: dict[str, Any]

    def summary(self) -> str:
        size_mb = self.archive.stat().st_size / 1e6
        return (
            f"packaged '{self.arch}' as TorchServe model '{self.model_name}' v{self.version} "
            f"({self.num_labels} labels): {self.archive} ({size_mb:.1f} MB), {self.config_properties}\n"
            f"archive verified: it loads back and answers an image "
            f"({len(self.probe_answer['labels'])} labels above threshold)\n"
            "serve it with `mlic serve`"
        )


def _best_field(best: dict[str, Any], field: str, kind: type, file: Path) -> Any:
    value = best.get(field)
    if not isinstance(value, kind):
        raise ServingError(
            f"'{field}' is missing or not a {kind.__name__}",
            file=file,
            field=field,
            fix="re-run `mlic evaluate`, which writes this file",
        )
    return value


def read_best(paths: Paths) -> dict[str, Any]:
    """best.json, checked: evaluate writes it only when the gate passes, so absence means stop."""
    best_file = paths.best_file
    if not best_file.is_file():
        raise ServingError(
            "no chosen model to package",
            file=best_file,
            fix="run `mlic evaluate` first; if it ran, its gate failed (the chosen model's test mAP below "
            "evaluate.min_map) and nothing may be packaged",
        )
    try:
        best = read_json(best_file, what="chosen-model file")
    except DataError as exc:
        raise ServingError(exc.message, file=best_file, fix="re-run `mlic evaluate`") from exc
    if not isinstance(best, dict):
        raise ServingError("must be a JSON object", file=best_file, fix="re-run `mlic evaluate`")
    _best_field(best, "arch", str, best_file)
    _best_field(best, "model_dir", str, best_file)
    labels = _best_field(best, "label_names", list, best_file)
    thresholds = _best_field(best, "thresholds", list, best_file)
    if not valid_thresholds(thresholds, len(labels)):
        raise ServingError(
            f"need one threshold in [0, 1] per label ({len(labels)}), got {thresholds}",
            file=best_file,
            field="thresholds",
            fix="re-run `mlic evaluate`",
        )
    return best


def _model_dir(paths: Paths, best: dict[str, Any]) -> Path:
    """The chosen model folder (relative to the project root), consistent with best.json's labels."""
    model_dir = paths.root / best["model_dir"]
    try:
        spec = load_spec(model_dir)
    except DataError as exc:
        raise ServingError(
            exc.message,
            file=exc.file,
            field="model_dir",
            fix=f"re-run `mlic train --arch {best['arch']}` and `mlic evaluate`",
        ) from exc
    if spec.get("label_names") != best["label_names"]:
        raise ServingError(
            "label_names differ from the chosen model's config.json",
            file=paths.best_file,
            field="label_names",
            fix="re-run `mlic evaluate` on the current models",
        )
    return model_dir


def run(config: Config, paths: Paths) -> PackageResult:
    best = read_best(paths)
    model_dir = _model_dir(paths, best)
    package = config.package
    serving_spec = {
        "model_name": package.model_name,
        "version": package.version,
        "arch": best["arch"],
        "label_names": best["label_names"],
        "thresholds": [float(t) for t in best["thresholds"]],
        "max_image_pixels": config.data.max_image_pixels,
        "metrics": best.get("metrics", {}),
    }
    with atomic_dir(paths.serving_dir) as staging:
        staged_store = staging / paths.model_store.relative_to(paths.serving_dir)
        archive = build_archive(model_dir, serving_spec, package, staged_store)
        logger.info("verifying %s: unpack, load through the handler, predict", archive.name)
        probe_answer = verify_archive(archive)
        write_properties(
            staging / paths.serving_config.relative_to(paths.serving_dir),
            serving_properties(package),
            "TorchServe settings written by `mlic package` (edit params.yaml `package.*`, not this file).\n"
            "Addresses are TorchServe's defaults on 127.0.0.1; `mlic serve` swaps in free ports.",
        )
    return PackageResult(
        arch=best["arch"],
        model_name=package.model_name,
        version=package.version,
        archive=paths.model_store / archive.name,
        config_properties=paths.serving_config,
        num_labels=len(best["label_names"]),
        probe_answer=probe_answer,
    )
