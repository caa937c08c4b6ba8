"""evaluate step: every trained architecture on the test split, the mAP gate, and the pick to ship.

Metrics at threshold 0.5 follow the papers' tables (comparable across projects); per-class
thresholds tuned on the validation split (max F1) are what the endpoint uses, and their CF1/OF1
are reported as `*_tuned`. Metrics are written even when the gate fails (so a failed run can be
compared); `artifacts/best.json` only when it passes, so nothing stale can be packaged.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mlic.config import Config
from mlic.data.canonical import load_labels
from mlic.data.dataset import MultiLabelDataset
from mlic.data.transforms import eval_transform
from mlic.errors import DataError
from mlic.evaluation import plots
from mlic.evaluation.gate import decide
from mlic.evaluation.metrics import best_f1_thresholds, evaluate_scores
from mlic.evaluation.predict import predict_probabilities
from mlic.io import atomic_path, write_json
from mlic.models.saved import load_model
from mlic.paths import Paths

log = logging.getLogger(__name__)


@dataclass
class ArchEvaluation:
    metrics: dict[str, float]
    per_class_ap: np.ndarray
    thresholds: np.ndarray
    test_probabilities: np.ndarray
    test_targets: np.ndarray


TABLE_COLUMNS = ["mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "OF1_top3"]


def metrics_table(per_arch: dict[str, dict[str, float]], best_arch: str | None = None) -> str:
    """Markdown table of the papers' columns, the chosen architecture starred."""
    lines = ["| arch | " + " | ".join(TABLE_COLUMNS) + " |", "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    for arch, metrics in per_arch.items():
        mark = " ★" if arch == best_arch else ""
        values = " | ".join(f"{metrics.get(c, float('nan')):.1f}" for c in TABLE_COLUMNS)
        lines.append(f"| {arch}{mark} | {values} |")
    return "\n".join(lines)


@dataclass
class EvaluateResult:
    per_arch: dict[str, dict[str, float]]
    best_arch: str
    best_map: float
    min_map: float
    gate_passed: bool

    def table(self) -> str:
        return metrics_table(self.per_arch, self.best_arch)

    def summary(self) -> str:
        verdict = "passed" if self.gate_passed else "FAILED"
        return (
            f"{self.table()}\n\ngate {verdict}: best {self.best_arch} mAP {self.best_map:.2f} "
            f"(floor {self.min_map:.2f})"
        )


def split_dataset(paths: Paths, split: str, num_classes: int, image_size: int, config: Config) -> MultiLabelDataset:
    """A split's images exactly as evaluation sees them (eval transform, pixel cap)."""
    return MultiLabelDataset(paths.split_file(split), num_classes, eval_transform(image_size), config.data.max_image_pixels)


def _loader(paths: Paths, split: str, num_classes: int, image_size: int, config: Config) -> DataLoader:
    dataset = split_dataset(paths, split, num_classes, image_size, config)
    return DataLoader(dataset, batch_size=config.train.batch_size, num_workers=config.train.num_workers)


def evaluate_arch(arch: str, config: Config, paths: Paths, label_names: list[str]) -> ArchEvaluation:
    model_dir = paths.model_dir(arch)
    if not (model_dir / "config.json").is_file():
        raise DataError(f"no trained model for '{arch}'", file=model_dir, fix=f"run `mlic train --arch {arch}`")
    device = torch.device("cuda" if torch.cuda.is_available() and config.train.device != "cpu" else "cpu")
    model, spec = load_model(model_dir, map_location=device)
    model.to(device)
    if spec["label_names"] != label_names:
        raise DataError(
            "the model was trained on other labels than the prepared data",
            file=model_dir / "config.json", field="label_names", fix=f"re-run `mlic train --arch {arch}`",
        )
    size, amp = spec["image_size"], config.train.amp
    test_probs, test_targets = predict_probabilities(
        model, _loader(paths, "test", len(label_names), size, config), device, amp, description=f"{arch} test"
    )
    default = config.evaluate.threshold
    thresholds = np.full(len(label_names), default)
    if config.evaluate.tune_thresholds:
        val_probs, val_targets = predict_probabilities(model, _loader(paths, "val", len(label_names), size, config), device, amp)
        if len(val_targets):
            thresholds = best_f1_thresholds(val_probs, val_targets, default)
    report = evaluate_scores(test_probs, test_targets, default, config.evaluate.top_k, label_names)
    tuned = evaluate_scores(test_probs, test_targets, thresholds, config.evaluate.top_k, label_names)
    metrics = dict(report.overall)
    metrics.update({"CF1_tuned": tuned.overall["CF1"], "OF1_tuned": tuned.overall["OF1"]})
    metrics = {name: round(float(value), 4) for name, value in metrics.items()}
    return ArchEvaluation(metrics, report.per_class_ap, thresholds, test_probs, test_targets)


def _write_per_class(target: Path, label_names: list[str], positives: np.ndarray, results: dict[str, ArchEvaluation]) -> None:
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "test_positives", *[f"AP_{arch}" for arch in results], *[f"threshold_{arch}" for arch in results]])
        for index, name in enumerate(label_names):
            aps = [f"{r.per_class_ap[index]:.2f}" if np.isfinite(r.per_class_ap[index]) else "" for r in results.values()]
            writer.writerow([name, int(positives[index]), *aps, *[f"{r.thresholds[index]:.4f}" for r in results.values()]])


def run(config: Config, paths: Paths) -> EvaluateResult:
    label_names = load_labels(paths.labels_file).names
    results = {arch: evaluate_arch(arch, config, paths, label_names) for arch in config.architectures}
    per_arch = {arch: r.metrics for arch, r in results.items()}
    decision = decide(per_arch, config.evaluate.min_map)

    best = results[decision.best_arch]
    write_json(paths.evaluation_metrics, per_arch)
    _write_per_class(paths.per_class_metrics, label_names, best.test_targets.sum(axis=0), results)
    plots.map_by_arch(per_arch, config.evaluate.min_map, paths.plots_dir / "map_by_arch.png")
    plots.per_class_ap(label_names, {a: r.per_class_ap for a, r in results.items()}, paths.plots_dir / "per_class_ap.png")
    plots.precision_recall(label_names, best.test_probabilities, best.test_targets, decision.best_arch, paths.plots_dir / "precision_recall.png")

    paths.best_file.unlink(missing_ok=True)
    if decision.passed:
        write_json(paths.best_file, {
            "arch": decision.best_arch,
            "model_dir": str(paths.model_dir(decision.best_arch).relative_to(paths.root)),
            "label_names": label_names,
            "thresholds": [round(float(t), 6) for t in best.thresholds],
            "metrics": per_arch[decision.best_arch],
        })
    else:
        log.error("gate failed: best mAP %.2f < %.2f", decision.best_map, config.evaluate.min_map)
    return EvaluateResult(per_arch, decision.best_arch, decision.best_map, config.evaluate.min_map, decision.passed)
