"""torch Dataset over a canonical split file: (image tensor, multi-hot target)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mlic.data.canonical import PreparedSplit, load_split
from mlic.data.images import DEFAULT_MAX_PIXELS, open_image


def multi_hot(labels: list[int], num_classes: int) -> torch.Tensor:
    target = torch.zeros(num_classes, dtype=torch.float32)
    target[labels] = 1.0
    return target


class MultiLabelDataset(Dataset):
    """Decodes images through `open_image`, so a corrupt file is a DataError naming it, raised in
    the main process or surfaced from the worker with its name."""

    def __init__(
        self,
        split_file: Path,
        num_classes: int,
        transform: Callable,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.split: PreparedSplit = load_split(split_file)
        self.num_classes = num_classes
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.split.records)

    def targets(self) -> torch.Tensor:
        """All targets `[N, C]` without decoding images (for metrics and label statistics)."""
        return torch.stack([multi_hot(r.labels, self.num_classes) for r in self.split.records])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.split.records[index]
        image = open_image(self.split.image_path(record), self.max_pixels)
        return self.transform(image), multi_hot(record.labels, self.num_classes)
