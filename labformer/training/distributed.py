"""Data-parallel training through PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc_per_node=N -m labformer train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; we join
the process group (gloo on CPU, NCCL on CUDA). Every rank draws the same global batch (same seeded
generators) and keeps its own contiguous slice, so N processes with a global batch B take exactly the
steps of one process with batch B. Only rank 0 prints and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Cluster", "join", "run_on_cluster"]

T = TypeVar("T")


@dataclass
class Cluster:
    """This process's place among ``world`` data-parallel processes (1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def local_slice(self, global_batch: int) -> slice:
        """This rank's contiguous share of a global batch (the batch must divide evenly)."""
        size = global_batch // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def check_batch(self, global_batch: int) -> None:
        if global_batch % self.world:
            raise ValueError(
                f"batch_size ({global_batch}) must be divisible by the number of processes "
                f"({self.world}): it is the global batch, split evenly across them"
            )

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel around ``model`` when several processes run, else ``model``."""
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sums numbers over all processes (identity for one process)."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (e.g. the run directory's name)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def run_facts(self, model: nn.Module, device: torch.device, amp: str) -> dict[str, Any]:
        """What every metrics.json records about how a run ran."""
        return {
            "parameters": sum(p.numel() for p in model.parameters()),
            "device": str(device),
            "amp": amp,
            "processes": self.world,
        }

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def leave(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def join(device: torch.device) -> tuple[Cluster, torch.device]:
    """Joins the torchrun process group if there is one; returns the cluster and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Cluster(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Cluster(rank, world, local_rank), device


def run_on_cluster(device_name: str, train: Callable[..., T], *args: Any) -> T:
    """Joins the process group (if torchrun started us), calls ``train(cluster, device, *args)``, leaves."""
    from labformer.device import resolve_device

    cluster, device = join(resolve_device(device_name))
    try:
        return train(cluster, device, *args)
    finally:
        cluster.leave()
