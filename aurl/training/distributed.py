"""torchrun's environment → process group, DDP or FSDP wrapping, and the few collectives the trainer needs.

Run with `torchrun --nproc_per_node=N -m aurl train ...` (add --nnodes/--node_rank/--rdzv_endpoint for
several machines). Without torchrun everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> DistEnv:
        """The ranks torchrun set in the environment (one process without it)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)


def pick_device(name: str) -> torch.device:
    """train.device: "auto" is CUDA, else Apple's MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def init_distributed(device: torch.device) -> tuple[DistEnv, torch.device]:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); the device of this rank."""
    env = DistEnv.from_environment()
    if not env.enabled:
        return env, device
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return env, device


def wrap_model(model: nn.Module, env: DistEnv, strategy: str, device: torch.device) -> nn.Module:
    """DistributedDataParallel (replicated weights) or FSDP2 fully_shard (sharded weights) under torchrun."""
    if not env.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "blocks", []):
            fully_shard(block)
        return fully_shard(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def gradient_sync(model: nn.Module, enabled: bool):
    """Context for one micro-batch's backward: skip the gradient all-reduce unless `enabled` (last one)."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not enabled:
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(enabled)
    return nullcontext()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_floats(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    """Each value summed over the ranks, in float64: sums of many token losses keep their digits."""
    if not env.enabled:
        return values
    summed = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed.tolist()


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
