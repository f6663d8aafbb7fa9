"""Many processes through the launchers users already have: ``torchrun`` and ``accelerate launch`` both
set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR, and this module joins the process group they
describe (gloo on CPU, NCCL on GPUs). Training stages run on every rank under PyTorch DDP; rank 0
alone writes the run directory and runs every other stage."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from .errors import PofaError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any = None) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def mean(self, value: float) -> float:
        """The mean of a number over the ranks (the logged loss of a step)."""
        return value if self.size == 1 else sum(self.gather(value)) / self.size


SOLO = World()


def join() -> World:
    """The process group the launcher describes in the environment, joined once (idempotent)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SOLO
    import torch
    import torch.distributed as dist

    world = World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        own_gpu = world.local_rank < torch.cuda.device_count()  # more processes than GPUs: gloo on the CPU
        backend = "cpu:gloo,cuda:nccl" if own_gpu else "gloo"
        if own_gpu:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
        log.info("rank %d of %d joined the process group (%s)", world.rank, size, backend)
    return world


def device(setting: str, world: World = SOLO) -> Any:
    """``auto``: this rank's GPU when CUDA is available, else the CPU."""
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise PofaError("training.device is cuda, but torch sees no CUDA device here; use auto or cpu")
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if world.local_rank >= torch.cuda.device_count():
        raise PofaError(f"process {world.local_rank} of this machine has no GPU of its own "
                        f"({torch.cuda.device_count()} here): launch at most one process per GPU, or set "
                        "training.device: cpu")
    return torch.device("cuda", world.local_rank)


def bf16(setting: str, where: Any) -> bool:
    """``auto``: bf16 autocast on GPUs that support it; off on the CPU (where it is asked for explicitly)."""
    import torch

    if setting == "bf16":
        return True
    return setting == "auto" and where.type == "cuda" and torch.cuda.is_bf16_supported()


def to_device(batch: dict[str, Any], where: Any) -> dict[str, Any]:
    return {name: value.to(where) if hasattr(value, "to") else value for name, value in batch.items()}
