"""Batched inference over a loader → probabilities and targets (shared by training and evaluation)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm


def autocast_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked (no loss scaler needed); plain fp32 on CPU."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False, description: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    probabilities, targets = [], []
    for images, batch_targets in tqdm(loader, desc=description, disable=description is None, leave=False):
        with autocast_context(device, amp):
            logits = model(images.to(device, non_blocking=True))
        probabilities.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(batch_targets.numpy())
    return np.concatenate(probabilities), np.concatenate(targets)
