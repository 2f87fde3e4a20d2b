"""Data-parallel plumbing: which rank this process is, and the few collectives the loop needs.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous variables) for each process it
starts; a plain ``python`` launch has none of them and is a world of one, where every method here
is a no-op, so the training loop has one code path for one process, one GPU per rank and many
nodes alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from gocoder_assets.checkpoint.device import DeviceChoice


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone evaluates, saves, writes TensorBoard and reports to Dagster."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over ranks (each rank holds the mean over its equal share of rows)."""
        if not self.active:
            return value
        value = value.clone()
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
        return value / self.world_size

    def wrap(self, model: torch.nn.Module, device: DeviceChoice) -> torch.nn.Module:
        """DistributedDataParallel around the model when there are several ranks."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415 - only under torchrun

        ids = [self.local_rank] if device.device == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def init_from_env(device: DeviceChoice, env: Mapping[str, str] | None = None) -> Dist:
    """Join the process group torchrun prepared (NCCL/RCCL on GPUs, gloo on CPU); a world of one otherwise."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", "0"))
    if device.device == "cuda":
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.device == "cuda" else "gloo")
    return Dist(rank=rank, world_size=world, local_rank=local_rank)


def shutdown(dist: Dist) -> None:
    if dist.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
