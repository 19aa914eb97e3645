"""Per-sample transforms run inside DataLoader workers: decode, resize/augment, to uint8.

Samples leave the workers as uint8 (3, H, W) tensors, a quarter of the bytes of float32
through the worker queues and the host-to-device copy; normalisation happens on the device
(`pipelines.data.normalize`). The geometry depends on the *model's* image size, not the
stored one:
- small images (<= 64 px: CIFAR, digits): resize to the size if stored otherwise, then
  random crop with 4-pixel zero padding and horizontal flips where the data allows them,
  and a small affine jitter instead where it does not (digits: see `small_affine`);
- larger images: torchvision's ImageNet recipe, RandomResizedCrop(size) + flip for training,
  Resize(size * 256 / 224) + CenterCrop(size) for evaluation.
Randomness comes from the reader's numpy generator (seeded per reader and pass), never from
torch's global RNG, so a seed fixes the batches.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pipelines.data.images import center_crop, resize_shorter, to_rgb, to_square

SMALL_IMAGE_MAX = 64
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


def decode_rgb(data: bytes, draft_to: int | None = None) -> Image.Image:
    """Any stored format and mode (grey, RGBA, CMYK, 16-bit, palette) -> an RGB image.

    For JPEG, `draft_to` lets libjpeg decode at 1/2, 1/4 or 1/8 scale while the shorter
    side stays >= draft_to: a 500 px photo cropped to 224 need not be decoded in full.
    """
    img = Image.open(io.BytesIO(data))
    if draft_to and img.format == "JPEG":
        img.draft("RGB", (draft_to, draft_to))
    return to_rgb(img)


def random_resized_crop_box(
    width: int, height: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (scale 0.08-1, ratio 3/4-4/3, 10 tries, then a
    centre crop at the nearest allowed ratio), drawn from `rng`."""
    area = width * height
    log_ratio = (math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*RRC_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < RRC_RATIO[0]:
        w, h = width, round(width / RRC_RATIO[0])
    elif in_ratio > RRC_RATIO[1]:
        w, h = round(height * RRC_RATIO[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def small_affine(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotation within +-10 degrees, scale within +-10%, shift within +-2 px, black fill.

    For small images whose meaning a flip would change (digits, characters). Pad-and-crop
    moves content across the 8-px patch boundaries by up to half a patch, and the hybrid
    (which sees patches) then underfits: on the digits it held the tiny hybrid from scratch
    at 93.0% test where this jitter gives 97.8% (`experiments/hybrid_scratch.py`,
    docs/RESULTS.md)."""
    w, h = img.size
    angle = np.deg2rad(rng.uniform(-10, 10))
    scale = rng.uniform(0.9, 1.1)
    dx, dy = rng.uniform(-2, 2, size=2)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    cx, cy = w / 2, h / 2
    # PIL maps each output pixel back to its input: the inverse of rotate+scale about the
    # centre, then the shift.
    a, b = cos, sin
    d, e = -sin, cos
    c = cx - a * (cx + dx) - b * (cy + dy)
    f = cy - d * (cx + dx) - e * (cy + dy)
    return img.transform((w, h), Image.AFFINE, (a, b, c, d, e, f), Image.BILINEAR, fillcolor=0)


def _to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


@dataclass(frozen=True)
class ImageTransform:
    """Encoded image bytes -> uint8 (3, size, size) for training (`train`) or evaluation."""

    size: int
    train: bool
    flip: bool
    pad: int = 4

    @property
    def small(self) -> bool:
        return self.size <= SMALL_IMAGE_MAX

    def __call__(self, data: bytes, rng: np.random.Generator) -> torch.Tensor:
        if self.small:
            return self._small(data, rng)
        return self._large_train(data, rng) if self.train else self._large_eval(data)

    def _small(self, data: bytes, rng: np.random.Generator) -> torch.Tensor:
        img = decode_rgb(data, draft_to=self.size)
        if img.size != (self.size, self.size):
            img = to_square(img, self.size, Image.BILINEAR)
        if self.train and not self.flip:
            return _to_tensor(small_affine(img, rng))
        pixels = np.asarray(img)
        if self.train:
            if self.pad:
                p = self.pad
                padded = np.pad(pixels, ((p, p), (p, p), (0, 0)))
                top, left = rng.integers(0, 2 * p + 1, size=2)
                pixels = padded[top : top + self.size, left : left + self.size]
            if self.flip and rng.random() < 0.5:
                pixels = pixels[:, ::-1]
        return _to_tensor(pixels)

    def _large_train(self, data: bytes, rng: np.random.Generator) -> torch.Tensor:
        img = decode_rgb(data, draft_to=self.size)
        box = random_resized_crop_box(*img.size, rng)
        img = img.resize((self.size, self.size), Image.BILINEAR, box=box)
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return _to_tensor(img)

    def _large_eval(self, data: bytes) -> torch.Tensor:
        short = round(self.size * 256 / 224)
        img = decode_rgb(data, draft_to=short)
        return _to_tensor(center_crop(resize_shorter(img, short, Image.BILINEAR), self.size))


def transform_for(manifest, *, train: bool, image_size: int | None = None) -> ImageTransform:
    """The transform for the manifest's data at the model's `image_size` (default: stored)."""
    from pipelines.data.geometry import model_image_size

    size = model_image_size(manifest.image_size, image_size)
    return ImageTransform(size=size, train=train, flip=manifest.flip_ok)
