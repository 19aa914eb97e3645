"""Per-channel mean/std from a seeded sample of training images, not a full pass.

A full pass decodes every image (hours at ImageNet size) for two numbers per channel that
2,000 images estimate to about three decimals. The sample is drawn from a seed, and partial
sums are merged in shard order, so the figures are the same whatever the worker count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Images are decoded at most this many pixels a side for statistics (JPEG `draft` makes that
# cheap): per-channel moments barely move with the scale.
STATS_SIDE = 64


@dataclass
class PixelSums:
    """Running per-channel sums over pixels scaled to [0, 1]; mergeable across processes."""

    sum: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sq: np.ndarray = field(default_factory=lambda: np.zeros(3))
    n: int = 0
    images: int = 0

    def add(self, pixels: np.ndarray) -> None:
        x = pixels.reshape(-1, pixels.shape[-1] if pixels.ndim == 3 else 1) / 255.0
        if x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1)
        self.sum += x[:, :3].sum(0)
        self.sq += (x[:, :3] ** 2).sum(0)
        self.n += x.shape[0]
        self.images += 1

    def merge(self, other: PixelSums) -> None:
        self.sum += other.sum
        self.sq += other.sq
        self.n += other.n
        self.images += other.images

    def mean_std(self) -> tuple[list[float], list[float]]:
        mean = self.sum / max(self.n, 1)
        std = np.sqrt(np.maximum(self.sq / max(self.n, 1) - mean**2, 1e-12))
        return mean.tolist(), std.tolist()


def sample_positions(count: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of `size` among `count` items (all if fewer)."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))
