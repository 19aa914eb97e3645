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


def matmul_peak_flops(
    device: torch.device, n: int = 1024, repeats: int = 10, dtype: torch.dtype = torch.float32
) -> float:
    """Matmul FLOP/s this machine reaches now in `dtype`: the ceiling a step is compared with."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    secs = seconds_per_call(lambda: a @ b, warmup=3, repeats=repeats)
    return 2 * n**3 / secs


def step_peak(device: torch.device) -> tuple[float, str]:
    """(peak FLOP/s, its label) for the precision the training step runs at: on a GPU the
    bf16 peak of an 8192^3 product (the step runs under bf16 autocast), on a CPU the fp32
    peak of a 1024^3 product (the step runs in fp32 there)."""
    if device.type == "cuda":
        return matmul_peak_flops(device, n=8192, dtype=torch.bfloat16), "bf16 matmul 8192^3"
    return matmul_peak_flops(device), "fp32 matmul 1024^3"
