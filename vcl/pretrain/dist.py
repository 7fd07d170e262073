"""Distributed training glue: a no-op with one process, DDP under ``torchrun``.

``torchrun --nproc_per_node G -m vcl pretrain CROPS --method odct -o RUN`` starts G
processes; each sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, takes GPU ``LOCAL_RANK``
and its share of every batch. Memory updates are all-gathered so that every rank holds
the same memories and labels; rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def launched() -> bool:
    """True when started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_type: str) -> None:
    if launched() and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` (rank order) along dim 0; shapes may differ by rank."""
    if world() == 1:
        return x
    sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(world())]
    dist.all_gather(sizes, torch.tensor([len(x)], device=x.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(world())]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])


def broadcast(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``x`` on every rank (in place)."""
    if world() > 1:
        dist.broadcast(x, 0)
    return x


def mean(value: float, device: Any) -> float:
    """The mean of a scalar over ranks."""
    if world() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
