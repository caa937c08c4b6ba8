"""A tiny, learnable prepared dataset in the canonical format, for tests of the later steps.

Each label is a coloured patch at its own place, so a few training steps already separate them.
Independent of the synthetic generator on purpose: graph/train/evaluate tests then fail only for
their own reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlic.data.canonical import ImageRecord, LabelSet, write_prepared

LABELS = ["boat", "sea", "car", "street", "cup", "kitchen"]
PAIRS = [(0, 1), (2, 3), (4, 5)]  # labels that always come together


def make_prepared(root: Path, images_per_split: dict[str, int] | None = None, size: int = 32, seed: int = 0) -> Path:
    counts = images_per_split or {"train": 36, "val": 12, "test": 12}
    rng = np.random.default_rng(seed)
    prepared = root / "data" / "prepared"
    (prepared / "images").mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[ImageRecord]] = {}
    image_id = 0
    for split, count in counts.items():
        records = []
        for n in range(count):
            pair = PAIRS[n % len(PAIRS)]
            labels = sorted(set(pair) | ({int(rng.integers(len(LABELS)))} if rng.random() < 0.3 else set()))
            pixels = rng.integers(0, 40, size=(size, size, 3), dtype=np.uint8)
            for label in labels:
                y, x = divmod(label, 3)
                colour = np.array([(label * 67) % 256, (label * 131) % 256, 255 - label * 40], dtype=np.uint8)
                pixels[y * size // 2 : y * size // 2 + size // 3, x * size // 3 : x * size // 3 + size // 4] = colour
            name = f"{split}_{n:04d}.png"
            Image.fromarray(pixels).save(prepared / "images" / name)
            records.append(ImageRecord(id=image_id, file_name=name, width=size, height=size, labels=labels))
            image_id += 1
        splits[split] = records
    write_prepared(prepared, splits, LabelSet(LABELS, list(range(len(LABELS)))), "images", "test-fixture")
    return prepared


def tiny_params(root: Path, **sections: Any) -> dict[str, Any]:
    """params.yaml content for quick CPU runs on `make_prepared` data: resnet18 at 32 px, 2 epochs,
    word vectors from a file written under `root`; `sections` override per key."""
    vectors = root / "vectors.txt"
    rng = np.random.default_rng(0)
    vectors.write_text("".join(f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=16)) + "\n" for w in LABELS))
    raw: dict[str, Any] = {
        "architectures": ["baseline", "mlgcn"],
        "graph": {"embeddings": {"source": "file", "path": str(vectors)}},
        "train": {"image_size": 32, "epochs": 2, "batch_size": 8, "lr": 0.003},
        "models": {"mlgcn": {"hidden_dim": 32}},
        "evaluate": {"min_map": 0.0},
    }
    for key, value in sections.items():
        raw.setdefault(key, {})
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    return raw
