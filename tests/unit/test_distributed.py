"""Sharded validation under DDP, on CPU with two gloo processes: shards come back in the split's
order without the sampler's padding, and every rank scores with rank 0's BatchNorm statistics."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from mlic.training.distributed import DistributedContext, broadcast_buffers, gather_shards

WORLD = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank(rank: int, port: int, total: int, out: str) -> None:
    """One rank: score its shard of `total` items (row i holds i's values), gather, sync BatchNorm."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        context = DistributedContext(rank=rank, world_size=WORLD)
        items = np.arange(total * 3, dtype=np.float32).reshape(total, 3)
        shard = list(DistributedSampler(range(total), num_replicas=WORLD, rank=rank, shuffle=False))
        scores, targets = gather_shards([items[shard, :2], items[shard, 2:]], total, context, torch.device("cpu"))
        norm = torch.nn.BatchNorm1d(4)
        norm.running_mean.fill_(rank + 1.0)
        broadcast_buffers(norm, context)
        np.savez(f"{out}/rank{rank}.npz", scores=scores, targets=targets, running_mean=norm.running_mean.numpy())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("total", [7, 8], ids=["padded", "even"])
def test_shards_are_gathered_in_order_and_buffers_are_rank_zeros(tmp_path: Path, total: int) -> None:
    mp.spawn(_rank, args=(_free_port(), total, str(tmp_path)), nprocs=WORLD, join=True)
    items = np.arange(total * 3, dtype=np.float32).reshape(total, 3)
    for rank in range(WORLD):
        result = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_array_equal(result["scores"], items[:, :2])
        np.testing.assert_array_equal(result["targets"], items[:, 2:])
        np.testing.assert_array_equal(result["running_mean"], np.ones(4, dtype=np.float32))
