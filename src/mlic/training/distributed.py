"""DDP through torchrun: the environment torchrun sets decides; nothing home-made.

`torchrun --nproc-per-node N -m mlic.cli train --arch A` runs N ranks; gloo on CPU, NCCL on GPUs.
Only rank 0 logs and writes outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistributedContext:
    """Read torchrun's variables (absent → a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    return DistributedContext(
        rank=int(os.environ["RANK"]), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def init_process_group(context: DistributedContext, device: torch.device) -> None:
    if context.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def destroy_process_group(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.barrier()


def mean_across_ranks(value: float, context: DistributedContext, device: torch.device) -> float:
    """Average a scalar over ranks (epoch loss), so rank 0 logs the global figure."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item() / context.world_size)


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift per rank in training)."""
    if context.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_shards(
    arrays: list[np.ndarray], total: int, context: DistributedContext, device: torch.device
) -> list[np.ndarray]:
    """Put back together, in the split's order, what each rank computed for its shard.

    A `DistributedSampler(shuffle=False)` gives rank r items r, r + W, r + 2W, ... of the split,
    padded to a multiple of W with its first items, so every rank holds the same number of rows:
    rows are gathered, interleaved back, and the padding is cut off. `arrays` are 2-D, one row per
    item, and are returned the same way (float32).
    """
    widths = [array.shape[1] for array in arrays]
    local = torch.from_numpy(np.concatenate([a.astype(np.float32) for a in arrays], axis=1)).to(device)
    gathered = [torch.empty_like(local) for _ in range(context.world_size)]
    dist.all_gather(gathered, local)
    rows = torch.stack(gathered, dim=1).reshape(-1, local.shape[1])[:total].cpu().numpy()
    return np.split(rows, np.cumsum(widths)[:-1], axis=1)
