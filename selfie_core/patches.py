"""Cutting images into a grid of non-overlapping square patches."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PatchGrid:
    """How an image of `image_size` splits into `rows` x `cols` patches of `patch_size`."""

    image_size: int
    patch_size: int

    def __post_init__(self) -> None:
        if self.patch_size <= 0 or self.image_size <= 0:
            raise ValueError("image_size and patch_size must be positive")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch size {self.patch_size} does not divide image size {self.image_size}: "
                "pick a patch size that divides it (32 -> 8, 224 -> 32)"
            )

    @property
    def rows(self) -> int:
        return self.image_size // self.patch_size

    @property
    def cols(self) -> int:
        return self.rows

    @property
    def num_patches(self) -> int:
        return self.rows * self.cols

    def row_col(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column index of each position, in row-major order. Shape: (N,) each."""
        pos = torch.arange(self.num_patches, device=device)
        return pos // self.cols, pos % self.cols


def default_patch_size(image_size: int) -> int:
    """The paper's choice: 8x8 patches for 32x32 images, 32x32 patches for 224x224 images."""
    return 8 if image_size <= 64 else 32


def patchify(images: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """Split images into patches in row-major order.

    Shape: (B, C, H, W) -> (B, N, C, p, p) with N = grid.num_patches.
    """
    b, c, h, w = images.shape
    if h != grid.image_size or w != grid.image_size:
        raise ValueError(f"expected {grid.image_size}x{grid.image_size} images, got {h}x{w}")
    p = grid.patch_size
    x = images.reshape(b, c, grid.rows, p, grid.cols, p)
    x = x.permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, grid.num_patches, c, p, p)
