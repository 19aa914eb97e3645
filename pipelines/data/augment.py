"""Per-sample transforms run inside DataLoader workers: decode, augment, normalise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipelines.data.images import decode_png


@dataclass(frozen=True)
class ImageTransform:
    """Random crop with zero padding and (where the data allows) horizontal flips for training;
    none of either for evaluation. Normalises with the manifest's per-channel statistics."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train: bool
    flip: bool
    pad: int = 4

    def __call__(self, png: bytes, rng: np.random.Generator) -> torch.Tensor:
        pixels = decode_png(png)
        if self.train:
            pixels = self._augment(pixels, rng)
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return x.sub_(mean).div_(std)

    def _augment(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w, _ = pixels.shape
        if self.pad:
            padded = np.pad(pixels, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)))
            top, left = rng.integers(0, 2 * self.pad + 1, size=2)
            pixels = padded[top : top + h, left : left + w]
        if self.flip and rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        return pixels


def transform_for(manifest, *, train: bool) -> ImageTransform:
    return ImageTransform(
        mean=tuple(manifest.mean), std=tuple(manifest.std), train=train, flip=manifest.flip_ok
    )
