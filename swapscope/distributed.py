"""Training on several processes under ``torchrun``: which process this is, and the few
collective steps the trainers need. Without torchrun (no ``WORLD_SIZE`` in the environment)
everything here is the single process and does nothing.

torchrun starts one process per rank with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; the
process group is gloo on the CPU and nccl on CUDA (each rank on its own GPU). Only rank 0 writes
(checkpoints, curves, previews, resume state); the others wait for it at a barrier where they
need what it wrote.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """The rank that writes."""
        return self.rank == 0


def launched_rank() -> int:
    """The rank torchrun gave this process (0 without torchrun): what a command prints only
    once is printed by rank 0."""
    return int(os.environ.get("RANK", "0"))


def join(device: str) -> tuple[Ranks, str]:
    """(this process's ranks, its device): the process group torchrun set up is joined once;
    on CUDA each rank takes the GPU of its local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), device
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), local), device


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


def mean(value: float, ranks: Ranks) -> float:
    """The mean of ``value`` over the ranks."""
    if ranks.world == 1:
        return float(value)
    return float(np.mean(gather(value, ranks)))


def gather(value, ranks: Ranks) -> list:
    """Every rank's ``value`` (any picklable object made by the ranks themselves), in rank
    order."""
    if ranks.world == 1:
        return [value]
    import torch.distributed as dist

    out = [None] * ranks.world
    dist.all_gather_object(out, value)
    return out


def average_gradients(parameters, ranks: Ranks) -> None:
    """Average the gradients of ``parameters`` over the ranks (what DistributedDataParallel
    does in its backward hooks, for steps that call sub-networks rather than one module)."""
    if ranks.world == 1:
        return
    import torch.distributed as dist

    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= ranks.world


def share_weights(module, ranks: Ranks) -> None:
    """Give every rank rank 0's parameters and buffers (the start of a run, or a resumed one)."""
    if ranks.world == 1:
        return
    import torch.distributed as dist

    for value in module.state_dict().values():
        dist.broadcast(value, src=0)


def share_buffers(module, ranks: Ranks) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics: each rank's last
    forward updated its own), so validation and checkpoints are the same on all."""
    if ranks.world == 1:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def weights_digest(module) -> str:
    """A hash of a module's parameters and buffers, to check that the ranks agree."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextmanager
def process_group(device: str) -> Iterator[tuple[Ranks, str]]:
    """``join`` for the length of a run, then ``leave``. A run that ends well waits at a barrier
    first: a rank that left while another still tore down its connections to it could abort
    that one (gloo's "terminate called without an active exception", seen about 1 run in 5
    of the two-process test on this machine). A run that failed leaves at once (its peers may
    be gone)."""
    ranks, device = join(device)
    try:
        yield ranks, device
        barrier(ranks)
    finally:
        leave(ranks)


def leave(ranks: Ranks) -> None:
    """Leave the process group at the end of a run."""
    if ranks.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
