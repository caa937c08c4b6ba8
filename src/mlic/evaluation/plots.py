"""PNG pictures of the evaluation (DVC's HTML plots need a CDN, blank offline)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlic.graph.cooccurrence import conditional_probabilities
from mlic.io import atomic_path


def _save(figure: plt.Figure, target: Path) -> Path:
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return target


def map_by_arch(per_arch: dict[str, dict[str, float]], min_map: float, target: Path) -> Path:
    """mAP, CF1 and OF1 per architecture, with the gate drawn as a line."""
    archs = list(per_arch)
    metrics = ["mAP", "CF1", "OF1"]
    positions = np.arange(len(archs))
    width = 0.8 / len(metrics)
    figure, axes = plt.subplots(figsize=(max(6, 1.3 * len(archs)), 4))
    for offset, metric in enumerate(metrics):
        values = [per_arch[a][metric] for a in archs]
        bars = axes.bar(positions + offset * width, values, width, label=metric)
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.axhline(min_map, color="red", linestyle="--", linewidth=1, label=f"gate (mAP ≥ {min_map:g})")
    axes.set_xticks(positions + width, archs)
    axes.set_ylabel("percent")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, loc="upper left")
    axes.set_title("Test metrics by architecture")
    return _save(figure, target)


def training_curves(histories: dict[str, list[dict[str, float]]], target: Path) -> Path:
    """Training loss and validation mAP per epoch, every architecture on the same axes.

    dvclive's TSV curves need DVC's CDN-backed HTML to be seen; this PNG is seen anywhere.
    """
    figure, (loss_axes, map_axes) = plt.subplots(1, 2, figsize=(10, 3.8))
    for arch, history in histories.items():
        epochs = np.arange(1, len(history) + 1)
        loss_axes.plot(epochs, [h["train_loss"] for h in history], marker="o", markersize=3, label=arch)
        map_axes.plot(epochs, [h["val_mAP"] for h in history], marker="o", markersize=3, label=arch)
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    map_axes.set(xlabel="epoch", ylabel="mAP (%)", title="Validation mAP", ylim=(0, 100))
    map_axes.legend(fontsize=8)
    return _save(figure, target)


def curves_by_revision(curves: dict[str, dict[str, list[float]]], target: Path) -> Path:
    """Validation mAP per epoch of every model at each revision (`{rev: {arch: [mAP...]}}`): one
    colour per model, one line style per revision, so a model's two versions sit side by side."""
    figure, axes = plt.subplots(figsize=(7, 4))
    archs = list(dict.fromkeys(arch for per_arch in curves.values() for arch in per_arch))
    colours = {arch: f"C{index % 10}" for index, arch in enumerate(archs)}
    for style, (rev, per_arch) in zip(("--", "-", ":", "-."), curves.items(), strict=False):
        for arch, values in per_arch.items():
            epochs = np.arange(1, len(values) + 1)
            axes.plot(epochs, values, style, color=colours[arch], marker="o", markersize=3, label=f"{arch} ({rev})")
    axes.set(xlabel="epoch", ylabel="mAP (%)", title="Validation mAP per epoch, by revision", ylim=(0, 100))
    axes.legend(fontsize=7, ncol=2)
    return _save(figure, target)


def per_class_ap(label_names: list[str], ap_by_arch: dict[str, np.ndarray], target: Path) -> Path:
    """Per-class AP of every architecture: where the label graph helps, and where it does not."""
    figure, axes = plt.subplots(figsize=(max(8, 0.5 * len(label_names)), 4.5))
    positions = np.arange(len(label_names))
    width = 0.8 / max(1, len(ap_by_arch))
    for offset, (arch, values) in enumerate(ap_by_arch.items()):
        axes.bar(positions + offset * width, np.nan_to_num(values), width, label=arch)
    axes.set_xticks(positions + 0.4 - width / 2, label_names, rotation=60, ha="right", fontsize=8)
    axes.set_ylabel("AP (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, ncol=min(6, len(ap_by_arch)))
    axes.set_title("Per-class average precision (test)")
    return _save(figure, target)


def precision_recall(
    label_names: list[str], probabilities: np.ndarray, targets: np.ndarray, arch: str, target: Path
) -> Path:
    """Micro-averaged precision-recall curve of the chosen model."""
    scores = probabilities.ravel()
    hits = (targets.ravel() > 0).astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    true_pos = np.cumsum(hits[order])
    precision = true_pos / np.arange(1, len(order) + 1)
    recall = true_pos / max(1.0, hits.sum())
    figure, axes = plt.subplots(figsize=(5, 4))
    axes.plot(recall, precision)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(f"Precision-recall over all labels: {arch} ({len(label_names)} labels)")
    return _save(figure, target)


def attention_grid(
    pixels: np.ndarray,
    maps: np.ndarray,
    positives: np.ndarray,
    scores: np.ndarray,
    label_names: list[str],
    arch: str,
    target: Path,
    labels_per_image: int = 4,
) -> Path:
    """Where each label looks: a row per image (`pixels` `[N, H, W, 3]` in [0, 1]) with the
    attention maps (`[N, C, h, w]`) of `labels_per_image` labels over it — the image's own labels
    first, then the highest-scored others — each titled with its score and ✓ when present. A
    label looking at its own object, or every label at the same spot, is seen at a glance."""
    count, height, width = pixels.shape[:3]
    figure, axes = plt.subplots(
        count, labels_per_image + 1, figsize=(1.6 * (labels_per_image + 1), 1.7 * count), squeeze=False
    )
    for row in range(count):
        axes[row, 0].imshow(pixels[row])
        axes[row, 0].set_title("image", fontsize=7)
        shown = np.lexsort((-scores[row], ~positives[row]))[:labels_per_image]  # own labels first, then by score
        for column, label in enumerate(shown, start=1):
            axes[row, column].imshow(pixels[row])
            axes[row, column].imshow(
                maps[row, label], cmap="jet", alpha=0.5, extent=(0, width, height, 0), interpolation="bilinear"
            )
            present = " ✓" if positives[row, label] else ""
            axes[row, column].set_title(f"{label_names[label]} {scores[row, label]:.2f}{present}", fontsize=6)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(f"{arch}: label attention on test images (its finest map)", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.99))  # keeps the title on the first row, not a figure-height above it
    return _save(figure, target)


def cooccurrence(label_names: list[str], targets: np.ndarray, predicted: np.ndarray, arch: str, target: Path) -> Path:
    """P(j | i) over the test split, from the true labels and from the chosen model's decisions,
    side by side on one scale: a model that learnt the label context reproduces the left map; one
    that ignores it shows a flatter right one."""
    maps = {
        "true labels": conditional_probabilities(targets.T.astype(np.int64) @ targets.astype(np.int64)),
        f"{arch}'s predictions": conditional_probabilities(predicted.T.astype(np.int64) @ predicted.astype(np.int64)),
    }
    side = max(5.0, 0.28 * len(label_names))
    figure, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side), squeeze=False)
    for axis, (title, probabilities) in zip(axes[0], maps.items(), strict=True):
        image = axis.imshow(probabilities, cmap="viridis", vmin=0, vmax=1)
        axis.set_xticks(range(len(label_names)), label_names, rotation=90, fontsize=6)
        axis.set_yticks(range(len(label_names)), label_names, fontsize=6)
        axis.set(title=f"P(column | row), test split: {title}")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return _save(figure, target)


def _label_line(mark: str, names: list[str], shown: int = 5, width: int = 42) -> str:
    """`mark name, name, …` wrapped to the picture's width, at most `shown` names and a count of the rest."""
    if not names:
        return ""
    rest = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return textwrap.fill(f"{mark} {', '.join(names[:shown])}{rest}", width, subsequent_indent="   ")


def predictions_grid(
    pixels: np.ndarray, targets: np.ndarray, predicted: np.ndarray, label_names: list[str], arch: str, target: Path
) -> Path:
    """Test images (`[N, H, W, 3]` in [0, 1]) with what the chosen model says: labels it got right,
    labels it added (false positives, +) and labels it missed (−)."""
    columns = 4
    rows = -(-len(pixels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 3.3 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(pixels):
            continue
        axis.imshow(pixels[index])
        truth, said = targets[index] > 0, predicted[index] > 0
        groups = {"✓": truth & said, "+": ~truth & said, "−": truth & ~said}
        lines = [_label_line(mark, [label_names[i] for i in np.flatnonzero(chosen)]) for mark, chosen in groups.items()]
        axis.set_title("\n".join(line for line in lines if line) or "(no labels)", fontsize=6, loc="left")
    figure.suptitle(f"{arch} on test images: ✓ right, + false positive, − missed", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    return _save(figure, target)
