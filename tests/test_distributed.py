"""tokenswap.distributed: a world of one is a no-op; two gloo ranks sum values and gradients."""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from tokenswap import distributed
from tokenswap.distributed import Dist, process_group


def test_one_process_needs_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    with process_group(torch.device("cpu")) as (ctx, device):
        assert (ctx.rank, ctx.world, ctx.main, ctx.created) == (0, 1, True, False)
        assert device == torch.device("cpu")
        assert ctx.sum(1.5) == 1.5 and ctx.from_main(4.0) == 4.0
        ctx.barrier()
        ctx.sum_grads([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    assert not torch.distributed.is_initialized()


def _rank(rank: int, port: int, results) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.BUCKET_ELEMENTS = 4  # several buckets for the 9 elements below
    with process_group(torch.device("cpu")) as (ctx, _):
        a = torch.nn.Parameter(torch.zeros(2, 2))
        b = torch.nn.Parameter(torch.zeros(5))
        a.grad = torch.full((2, 2), float(rank + 1))
        unused = torch.nn.Parameter(torch.zeros(3))  # no gradient on any rank
        if rank == 0:  # rank 1 got no gradient for b: it must send zeros, not hang
            b.grad = torch.arange(5, dtype=torch.float32)
        ctx.sum_grads([a, unused, b])
        results[rank] = (ctx.world, ctx.sum(rank + 1), ctx.from_main(10.0 * (rank + 1)),
                         a.grad.tolist(), b.grad.tolist())
        results[f"unused-{rank}"] = unused.grad is None  # as one process: AdamW skips it
    results[f"left-{rank}"] = not torch.distributed.is_initialized()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_sum_values_and_gradients():
    results = mp.Manager().dict()
    procs = mp.start_processes(_rank, args=(_free_port(), results), nprocs=2, join=False,
                               start_method="spawn")
    deadline = time.monotonic() + 120  # mismatched collectives hang rather than fail
    while not procs.join(timeout=1):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("the two ranks did not finish in 120 s (a collective hung)")
    for rank in (0, 1):
        world, total, main_value, a, b = results[rank]
        assert (world, total, main_value) == (2, 3.0, 10.0)
        assert a == [[3.0, 3.0], [3.0, 3.0]]
        assert b == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert results[f"left-{rank}"]
        assert results[f"unused-{rank}"]


def test_fsdp_leaves_gradients_to_fsdp():
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    Dist(rank=0, world=2, fsdp=True).sum_grads([p])  # no collective: FSDP reduced them
    assert torch.equal(p.grad, torch.ones(2))
