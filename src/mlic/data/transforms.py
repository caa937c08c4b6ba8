"""Image → tensor transforms, shared by training, evaluation and the TorchServe handler so a
served model sees exactly the preprocessing it was evaluated with."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_transform(image_size: int) -> v2.Compose:
    """Resize the whole image to a square: multi-label objects may sit anywhere, so no crop."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize((image_size, image_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def train_transform(image_size: int, augment: bool) -> v2.Compose:
    """Flips and mild scale jitter only: crops that cut objects away would make labels wrong."""
    if not augment:
        return eval_transform(image_size)
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop((image_size, image_size), scale=(0.7, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def to_model_input(image: Image.Image, image_size: int) -> torch.Tensor:
    """One PIL RGB image → `[3, S, S]` normalised tensor (the serving path)."""
    return eval_transform(image_size)(image)
