"""One process of a data-parallel job, or the only process.

``torchrun`` and ``accelerate launch`` set ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`process_group` reads them, joins the group (NCCL on GPUs, one GPU per rank; gloo on CPU)
and leaves it afterwards if it created it. Without them it yields a world of one, where every
collective below is a no-op, so the training loops (``tokenswap tune``, ``tokenswap hypernet
train``) have one code path for one process and for many.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

BUCKET_ELEMENTS = 1 << 23  # gradients all-reduced per call (32 MB of float32)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    created: bool = False  # this process joined the group, so it leaves it
    device: torch.device = torch.device("cpu")  # NCCL reduces tensors on the rank's GPU only
    fsdp: bool = False  # FSDP reduces the gradients itself

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float) -> float:
        if self.world == 1:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def from_main(self, value: float) -> float:
        """Rank 0's value on every rank (clocks differ per rank; decisions must not)."""
        return self.sum(value if self.main else 0.0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over ranks, in buckets of ``BUCKET_ELEMENTS``.

        gloo has no AVG, so the loss must be normalised by the global token count. A parameter
        that got a gradient on some rank but not on this one takes zeros here, so every rank
        reduces the same tensors; one that got none on any rank keeps ``grad = None``, as in a
        single process (the optimizer skips it, momentum and weight decay included).
        """
        if self.world == 1 or self.fsdp:
            return
        anywhere = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                                device=self.device)
        dist.all_reduce(anywhere)
        params = [p for p, n in zip(params, anywhere.tolist(), strict=True) if n > 0]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[torch.Tensor] = []
        size = 0
        for g in [*(p.grad for p in params), None]:
            if g is not None:
                bucket.append(g)
                size += g.numel()
            if bucket and (g is None or size >= BUCKET_ELEMENTS):
                flat = torch.cat([b.reshape(-1) for b in bucket])
                dist.all_reduce(flat)
                offset = 0
                for b in bucket:
                    b.copy_(flat[offset:offset + b.numel()].view_as(b))
                    offset += b.numel()
                bucket, size = [], 0


@contextmanager
def process_group(device: torch.device, fsdp: bool = False) -> Iterator[tuple[Dist, torch.device]]:
    """This process's place in the job and the device it trains on (a rank's own GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Dist(device=device), device
        return
    created = False
    if device.type == "cuda":  # one GPU per rank
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
    try:
        yield Dist(dist.get_rank(), dist.get_world_size(), created, device, fsdp), device
    finally:
        if created:
            dist.destroy_process_group()


__all__ = ["BUCKET_ELEMENTS", "Dist", "process_group"]
