"""One run on several processes (``torchrun --nproc_per_node K earlyprune run ...``).

Every rank follows the same control flow. The mask is computed on rank 0 and broadcast; each
rank trains on its share of every batch under DistributedDataParallel (the loss is scaled so that
the averaged gradient equals the single-process full-batch gradient exactly); only rank 0 writes
to the store, and every store write ends with a barrier so that all ranks read the same files.
BatchNorm uses per-rank statistics on CPU (gloo) and SyncBatchNorm on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from earlyprune.masks.mask import Mask


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed | None:
        """The job torchrun describes in the environment, or None for a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    def device(self) -> str:
        """One GPU per rank when CUDA is present, else the CPU."""
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def init(self) -> None:
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group(backend=backend)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def shard(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """This rank's strided share of a batch (sizes differ by at most one)."""
        return x[self.rank :: self.world_size], y[self.rank :: self.world_size]

    def loss_scale(self, batch_size: int) -> float:
        """Multiplier for a *summed* per-rank loss so DDP's gradient average is the full mean."""
        return self.world_size / batch_size

    def mean_loss(self, scaled_loss: Tensor) -> float:
        """The full-batch mean loss, identical on every rank (so all stop together on NaN)."""
        total = scaled_loss.detach().float().reshape(1).clone()
        dist.all_reduce(total)
        return float(total) / self.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``model`` (SyncBatchNorm first, on CUDA)."""
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[device.index])
        return DistributedDataParallel(model)

    def broadcast_mask(self, mask: Mask | None, like: Mask) -> Mask:
        """Rank 0's mask on every rank (``like`` gives names and shapes on other ranks)."""
        out: Mask = {}
        for name, ref in like.items():
            t = (mask[name] if self.is_main and mask is not None else ref).to(torch.uint8)
            t = t.contiguous().clone()
            dist.broadcast(t, src=0)
            out[name] = t.to(torch.bool)
        return out

    def barrier(self) -> None:
        dist.barrier()
