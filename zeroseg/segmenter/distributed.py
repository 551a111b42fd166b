"""torchrun / DDP plumbing: the same entry point runs on one CPU, several CPU processes
(gloo) or several GPUs (NCCL)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_distributed() -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local, device)


def all_reduce_mean(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.world_size > 1:
        x = x.detach().clone()
        dist.all_reduce(x)
        x /= ctx.world_size
    return x


def global_num_masks(class_labels: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Mask2Former's loss normaliser under DDP: the number of target masks of the global batch
    per process (all-reduced over the processes, as Mask2Former's ``SetCriterion``; Hugging
    Face's ``Mask2FormerLoss.get_num_masks`` reduces only under ``accelerate``), so the averaged
    gradients of a W-process step equal those of a 1-process step on the same global batch.
    ``class_labels``: this process's per-image (n_i,) target classes."""
    n = torch.as_tensor(float(sum(len(c) for c in class_labels)), device=device)
    dist.all_reduce(n)
    return torch.clamp(n / dist.get_world_size(), min=1)


def teardown(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
