"""Decoding and encoding images: PNG bytes <-> uint8 arrays of a fixed square size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def to_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` and centre-crop: the usual ImageNet-style preparation."""
    if img.size == (size, size):
        return img
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG bytes (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 (H, W, 3); grayscale is repeated over three channels."""
    arr = np.array(Image.open(io.BytesIO(data)))
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr[:, :, :3]
