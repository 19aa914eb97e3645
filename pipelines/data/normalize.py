"""Normalising uint8 batches on the device, where it is one fused elementwise pass.

Loader processes ship uint8 (N, 3, H, W): 4x fewer bytes than float32 through the worker
queues, pinned memory and the host-to-device copy, and no per-sample float work on the CPU
cores that decoding already saturates. Pretraining, finetuning and evaluation call this at
the one place a batch moves to its device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch


def to_device_normalized(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], device: torch.device
) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 on `device`, (x / 255 - mean) / std per channel,
    channels_last like the models' weights. Float input is taken as already normalised."""
    x = images.to(device, non_blocking=True)
    if x.dtype != torch.uint8:
        return x
    m = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
    x = x.float().sub_(m).div_(s)
    return x.contiguous(memory_format=torch.channels_last)


def normalized_batches(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches moved to `device`, images normalised there."""
    for images, labels in batches:
        yield to_device_normalized(images, mean, std, device), labels.to(device)
