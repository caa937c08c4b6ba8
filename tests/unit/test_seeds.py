"""Per-epoch, per-rank seeds: DDP ranks augment differently; a resumed epoch draws as before."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mlic.data.transforms import train_transform
from mlic.training.loop import epoch_seed, seed_everything


def augmented(seed: int, image: Image.Image, draws: int = 8) -> torch.Tensor:
    """What the training transform makes of `image` over `draws` samples after seeding an epoch."""
    seed_everything(seed)
    transform = train_transform(32, augment=True)
    return torch.stack([transform(image) for _ in range(draws)])


def test_ranks_draw_different_augmentations_and_an_epoch_draws_the_same_again() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    rank0, rank1 = augmented(epoch_seed(3, 5, rank=0), image), augmented(epoch_seed(3, 5, rank=1), image)
    assert not torch.equal(rank0, rank1)
    assert torch.equal(rank0, augmented(epoch_seed(3, 5, rank=0), image))  # resumed at this epoch


def test_seeds_differ_across_epochs_ranks_and_runs() -> None:
    seeds = [epoch_seed(seed, epoch, rank) for seed in range(3) for epoch in range(100) for rank in range(16)]
    assert len(set(seeds)) == len(seeds)
