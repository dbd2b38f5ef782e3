"""Is bfloat16 fast on this device? A measured answer, so ``--precision bf16`` never silently
runs 40x slower than float32.

Pure bf16 halves memory and, on CPUs with native bf16 matrix units (AMX, AVX512-BF16) or on
GPUs, runs faster than float32. CPUs without them (AVX2-only x86, e.g. many AMD EPYC) fall back
to a scalar bf16 GEMM: measured here on an AVX2 EPYC, a (512, 576) x (576, 1536) product took
1.04 s in bf16 against 0.013 s in float32 on one thread (80x; 256 x 256 products: 53x). Instead
of guessing from CPU flags, which differ across vendors and architectures,
:func:`bf16_slowdown` times one small product in both types.
"""

from __future__ import annotations

import functools
import time

import torch

SLOW_FACTOR = 4.0  # warn when bf16 matmuls are this many times slower than float32


def _seconds(a: torch.Tensor, b: torch.Tensor, repeats: int = 3) -> float:
    a @ b  # warm-up (kernel selection, allocation)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def _cpu_slowdown(size: int) -> float:
    # One thread: the kernel's speed is the question, and several threads on a busy machine
    # make the short float32 product look tens of times slower than it is.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
        fp32 = _seconds(a, b)
        return _seconds(a.bfloat16(), b.bfloat16()) / max(fp32, 1e-9)
    finally:
        torch.set_num_threads(threads)


def bf16_slowdown(device: torch.device | str, size: int = 256) -> float:
    """Time of a bf16 matmul over the float32 one on ``device``; 1.0 off the CPU (GPUs and
    other accelerators are not timed: their bf16 is native where it exists)."""
    if torch.device(device).type != "cpu":
        return 1.0
    return _cpu_slowdown(size)


def bf16_warning(device: torch.device | str) -> str | None:
    """A one-line warning when bf16 is much slower than float32 on ``device``, else None."""
    factor = bf16_slowdown(device)
    if factor < SLOW_FACTOR:
        return None
    return (f"bf16 matrix products are {factor:.0f}x slower than float32 on this CPU (no "
            f"native bf16, {torch.backends.cpu.get_cpu_capability()}); --precision fp32 "
            "will be much faster here")


__all__ = ["SLOW_FACTOR", "bf16_slowdown", "bf16_warning"]
