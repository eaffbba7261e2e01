"""Several processes, one model: the torchrun environment, batch sharding and reductions.

``torchrun --nproc_per_node=N -m cagnet train ...`` starts N copies of the program and tells
each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` through the environment.
`init_distributed` joins them into one process group (NCCL on GPUs, gloo on CPUs); the
trainer then wraps its loss module in ``DistributedDataParallel``, which averages gradients
over the processes during ``backward``. Each iteration's global batch is drawn from
``(seed, iteration)`` alone, and `shard` gives every process its own contiguous slice of it,
so N processes with batch B/N see exactly the images one process with batch B sees.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cagnet.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its ``rank`` among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and metrics; the others only compute."""
        return self.rank == 0


def current() -> DistInfo:
    """The process group this process has joined, or a single process when there is none."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def init_distributed(device: str) -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    Without ``WORLD_SIZE`` > 1 in the environment this is a no-op returning a single process.
    ``device`` picks the backend: NCCL for ``"cuda"`` (each process takes GPU ``LOCAL_RANK``),
    gloo otherwise.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or current().enabled:
        return current()
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return current()


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Process ``rank``'s contiguous slice of ``items``; every process gets the same count."""
    if len(items) % world_size:
        raise ConfigError(f"a batch of {len(items)} cannot be split evenly over {world_size} "
                          "processes; choose a batch size divisible by the process count")
    n = len(items) // world_size
    return list(items[rank * n:(rank + 1) * n])


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (e.g. a confusion matrix); no-op alone."""
    if current().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait until every process reaches this point; no-op alone."""
    if current().enabled:
        dist.barrier()
