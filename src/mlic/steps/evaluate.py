"""evaluate step: every trained architecture on the validation and test splits, the pick to ship,
and the mAP gate.

The architecture with the highest validation mAP is chosen, and its test mAP must clear
`evaluate.min_map`: choosing on test would make the shipped model's test figure optimistic (the
best of several noisy estimates). Test figures keep their plain names (`mAP`, `CF1`, ...); the
validation mAP is `val_mAP`, beside them in `metrics/evaluation.json`.

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
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from mlic.config import Config
from mlic.data.canonical import load_labels
from mlic.data.dataset import MultiLabelDataset
from mlic.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from mlic.device import select_device
from mlic.errors import DataError
from mlic.evaluation import plots
from mlic.evaluation.gate import VAL_MAP, decide
from mlic.evaluation.metrics import best_f1_thresholds, evaluate_scores, mean_average_precision
from mlic.evaluation.predict import predict_probabilities
from mlic.evaluation.tables import metrics_table
from mlic.io import atomic_path, read_json, write_json
from mlic.models.diagnostics import label_maps
from mlic.models.saved import load_model
from mlic.paths import Paths

log = logging.getLogger(__name__)


@dataclass
class ArchEvaluation:
    #: Test figures under the papers' names, plus `val_mAP` (the figure that chooses the model).
    metrics: dict[str, float]
    #: Test split, percent.
    per_class_ap: np.ndarray
    thresholds: np.ndarray
    test_probabilities: np.ndarray
    test_targets: np.ndarray
    #: The side the model reads images at (its saved config): the pictures show what it saw.
    image_size: int


@dataclass
class EvaluateResult:
    per_arch: dict[str, dict[str, float]]
    best_arch: str
    #: The split whose mAP chose `best_arch`: "val", or "test" when no architecture had a val mAP.
    chosen_by: Literal["val", "test"]
    #: `best_arch`'s mAP on that split.
    chosen_map: float
    #: `best_arch`'s test mAP: the figure reported for it and gated on `min_map`.
    test_map: float
    min_map: float
    gate_passed: bool

    def table(self) -> str:
        return metrics_table(self.per_arch, self.best_arch)

    def summary(self) -> str:
        verdict = "passed" if self.gate_passed else "FAILED"
        return (
            f"{self.table()}\n\ngate {verdict}: {self.best_arch} chosen by {self.chosen_by} mAP "
            f"{self.chosen_map:.2f}, test mAP {self.test_map:.2f} (floor {self.min_map:.2f})"
        )


def split_dataset(paths: Paths, split: str, num_classes: int, image_size: int, config: Config) -> MultiLabelDataset:
    """A split's images exactly as evaluation sees them (eval transform, pixel cap)."""
    return MultiLabelDataset(
        paths.split_file(split), num_classes, eval_transform(image_size), config.data.max_image_pixels
    )


def _predict_split(
    model: torch.nn.Module, arch: str, dataset: MultiLabelDataset, config: Config, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and targets `[N, C]` of one split; `[0, C]` for an empty one (a loader has no batch)."""
    if len(dataset) == 0:
        return np.zeros((0, dataset.num_classes)), np.zeros((0, dataset.num_classes))
    loader = DataLoader(dataset, batch_size=config.train.batch_size, num_workers=config.train.num_workers)
    return predict_probabilities(model, loader, device, config.train.amp, description=f"{arch} {dataset.split.name}")


#: How many test images the attention picture shows (its rows), and the predictions picture.
ATTENTION_IMAGES = 8
PREDICTION_IMAGES = 12


def preview_pixels(dataset: MultiLabelDataset, count: int) -> tuple[torch.Tensor, np.ndarray]:
    """The first `count` images as the model reads them (`[N, 3, H, W]`), and as a person sees
    them (`[N, H, W, 3]` in [0, 1], normalisation undone)."""
    images = torch.stack([dataset[index][0] for index in range(count)])
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in (IMAGENET_MEAN, IMAGENET_STD))
    return images, (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def draw_label_attention(
    model: torch.nn.Module,
    arch: str,
    dataset: MultiLabelDataset,
    probabilities: np.ndarray,
    targets: np.ndarray,
    label_names: list[str],
    device: torch.device,
    target: Path,
) -> Path | None:
    """The attention picture of a model with label-guided attention (None for the others): the
    labels' maps on the first test images, at the finest map the model attends over."""
    count = min(ATTENTION_IMAGES, len(dataset))
    if count == 0:
        return None
    images, pixels = preview_pixels(dataset, count)
    calls = label_maps(model, images.to(device), len(label_names))
    if not calls:
        return None
    finest = max(calls, key=lambda maps: maps.shape[-1] * maps.shape[-2])
    positives = targets[:count] > 0
    return plots.attention_grid(
        pixels, finest.float().cpu().numpy(), positives, probabilities[:count], label_names, arch, target
    )


def evaluate_arch(
    arch: str, config: Config, paths: Paths, label_names: list[str], device: torch.device
) -> ArchEvaluation:
    model_dir = paths.model_dir(arch)
    if not (model_dir / "config.json").is_file():
        raise DataError(f"no trained model for '{arch}'", file=model_dir, fix=f"run `mlic train --arch {arch}`")
    model, spec = load_model(model_dir, map_location=device)
    model.to(device)
    if spec["label_names"] != label_names:
        raise DataError(
            "the model was trained on other labels than the prepared data",
            file=model_dir / "config.json",
            field="label_names",
            fix=f"re-run `mlic train --arch {arch}`",
        )
    test_split, val_split = (
        split_dataset(paths, s, len(label_names), spec["image_size"], config) for s in ("test", "val")
    )
    test_probs, test_targets = _predict_split(model, arch, test_split, config, device)
    draw_label_attention(
        model,
        arch,
        test_split,
        test_probs,
        test_targets,
        label_names,
        device,
        paths.plots_dir / f"attention_{arch}.png",
    )
    # one val prediction serves both uses: its mAP chooses the model, its scores tune the thresholds
    val_probs, val_targets = _predict_split(model, arch, val_split, config, device)
    default = config.evaluate.threshold
    thresholds = np.full(len(label_names), default)
    if config.evaluate.tune_thresholds:
        thresholds = best_f1_thresholds(val_probs, val_targets, default)  # the default where val has no positive
    val_map = mean_average_precision(val_probs, val_targets, label_names) if len(val_targets) else float("nan")
    report = evaluate_scores(test_probs, test_targets, default, config.evaluate.top_k, label_names)
    tuned = evaluate_scores(test_probs, test_targets, thresholds, config.evaluate.top_k, label_names)
    metrics = dict(report.overall)
    metrics.update({"CF1_tuned": tuned.overall["CF1"], "OF1_tuned": tuned.overall["OF1"], VAL_MAP: val_map})
    metrics = {name: round(float(value), 4) for name, value in metrics.items()}
    return ArchEvaluation(metrics, report.per_class_ap, thresholds, test_probs, test_targets, spec["image_size"])


def draw_chosen_model(arch: str, result: ArchEvaluation, label_names: list[str], config: Config, paths: Paths) -> None:
    """What the model to ship decides, at the thresholds it ships with: the label co-occurrence of
    its decisions against the true one, and its labels on the first test images."""
    predicted = result.test_probabilities >= result.thresholds
    plots.cooccurrence(label_names, result.test_targets, predicted, arch, paths.plots_dir / "cooccurrence.png")
    dataset = split_dataset(paths, "test", len(label_names), result.image_size, config)
    count = min(PREDICTION_IMAGES, len(dataset))
    if count:
        _, pixels = preview_pixels(dataset, count)
        plots.predictions_grid(
            pixels,
            result.test_targets[:count],
            predicted[:count],
            label_names,
            arch,
            paths.plots_dir / "predictions.png",
        )


def _write_per_class(
    target: Path, label_names: list[str], positives: np.ndarray, results: dict[str, ArchEvaluation]
) -> None:
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["label", "test_positives", *[f"AP_{arch}" for arch in results], *[f"threshold_{arch}" for arch in results]]
        )
        for index, name in enumerate(label_names):
            aps = [
                f"{r.per_class_ap[index]:.2f}" if np.isfinite(r.per_class_ap[index]) else "" for r in results.values()
            ]
            writer.writerow(
                [name, int(positives[index]), *aps, *[f"{r.thresholds[index]:.4f}" for r in results.values()]]
            )


def _histories(archs: list[str], paths: Paths) -> dict[str, list[dict[str, float]]]:
    """Each model's per-epoch history, as `mlic train` saved it beside the weights (a model saved
    by other means has none and is left out of the curves)."""
    summaries = {arch: paths.model_dir(arch) / "training.json" for arch in archs}
    return {
        arch: read_json(path, what="training summary")["history"] for arch, path in summaries.items() if path.is_file()
    }


def run(config: Config, paths: Paths) -> EvaluateResult:
    label_names = load_labels(paths.labels_file).names
    device = select_device(config.train.device)  # once: it logs its choice, and `cuda` may refuse
    results = {arch: evaluate_arch(arch, config, paths, label_names, device) for arch in config.architectures}
    per_arch = {arch: r.metrics for arch, r in results.items()}
    decision = decide(per_arch, config.evaluate.min_map)

    best = results[decision.best_arch]
    write_json(paths.evaluation_metrics, per_arch)
    _write_per_class(paths.per_class_metrics, label_names, best.test_targets.sum(axis=0), results)
    plots.map_by_arch(per_arch, config.evaluate.min_map, paths.plots_dir / "map_by_arch.png")
    plots.per_class_ap(
        label_names, {a: r.per_class_ap for a, r in results.items()}, paths.plots_dir / "per_class_ap.png"
    )
    plots.precision_recall(
        label_names,
        best.test_probabilities,
        best.test_targets,
        decision.best_arch,
        paths.plots_dir / "precision_recall.png",
    )
    plots.training_curves(_histories(config.architectures, paths), paths.plots_dir / "training_curves.png")
    draw_chosen_model(decision.best_arch, best, label_names, config, paths)

    paths.best_file.unlink(missing_ok=True)
    if decision.passed:
        write_json(
            paths.best_file,
            {
                "arch": decision.best_arch,
                "model_dir": str(paths.model_dir(decision.best_arch).relative_to(paths.root)),
                "label_names": label_names,
                "thresholds": [round(float(t), 6) for t in best.thresholds],
                "metrics": per_arch[decision.best_arch],
            },
        )
    else:
        log.error(
            "gate failed: %s, chosen by %s mAP, has test mAP %.2f < %.2f",
            decision.best_arch,
            decision.chosen_by,
            decision.test_map,
            config.evaluate.min_map,
        )
    return EvaluateResult(
        per_arch,
        decision.best_arch,
        decision.chosen_by,
        decision.chosen_map,
        decision.test_map,
        config.evaluate.min_map,
        decision.passed,
    )
