"""Wall-clock timing that warms up first and synchronises the GPU when there is one."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def seconds_per_call(fn: Callable[[], object], *, warmup: int, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def matmul_peak_flops(device: torch.device, n: int = 1024, repeats: int = 10) -> float:
    """fp32 matmul FLOP/s this machine reaches now: the ceiling the model step is compared with."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    secs = seconds_per_call(lambda: a @ b, warmup=3, repeats=repeats)
    return 2 * n**3 / secs
