"""Choosing which patch positions each image hides.

Every image gets its own random subset (one public implementation shared one permutation
across the batch, which lets the model learn the batch's mask instead of the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PatchMask:
    """Positions per image, sorted ascending within each set.

    Shapes: visible (B, N - M), masked (B, M).
    """

    visible: torch.Tensor
    masked: torch.Tensor


def num_masked(num_patches: int, fraction: float) -> int:
    """How many positions a fraction hides: at least one, and at least one stays visible."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"mask fraction must lie in (0, 1), got {fraction}")
    m = round(num_patches * fraction)
    return min(max(m, 1), num_patches - 1)


def sample_masks(
    batch_size: int,
    num_patches: int,
    fraction: float,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> PatchMask:
    """Draw an independent mask for each image from `generator` (seed it for reproducibility).

    The noise is drawn on the generator's device (a CUDA generator samples on the GPU, with
    no host work or copy per step), then the result is moved to `device` if it differs."""
    m = num_masked(num_patches, fraction)
    where = generator.device if generator is not None else device
    noise = torch.rand(batch_size, num_patches, generator=generator, device=where)
    order = noise.argsort(dim=1)
    masked = order[:, :m].sort(dim=1).values
    visible = order[:, m:].sort(dim=1).values
    return PatchMask(visible=visible.to(device), masked=masked.to(device))
