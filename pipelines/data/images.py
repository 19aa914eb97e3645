"""Image bytes: a cheap validity check that keeps the bytes as stored, decoding any mode to
RGB, and the optional re-encode (resize, JPEG/PNG) for those who want smaller shards.

Ingest keeps a JPEG/PNG/WebP file byte for byte: re-encoding ImageNet as PNG made it 4-5x
larger and cost hours of one core. The validity check reads headers and trailers only, so
checking a 110 kB JPEG costs microseconds rather than a full decode.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

# PIL's format name -> the WebDataset extension a file of that format is stored under.
KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error)


class BadImage(ValueError):
    """The bytes are not a complete image Pillow can read; the message says why."""


@dataclass(frozen=True)
class Checked:
    """What the cheap check learned: the WebDataset extension (None: not kept as is), size."""

    ext: str | None
    width: int
    height: int


def check_image(data: bytes) -> Checked:
    """Header + trailer check, no pixel decode: raise BadImage for unreadable or cut bytes.

    JPEG: the end-of-image marker must follow the last start-of-scan (a cut file lacks it);
    PNG: Pillow's `verify` walks every chunk and its CRC; WebP: the RIFF length must match.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            if fmt == "PNG":
                img.verify()
    except DECODE_ERRORS as exc:
        raise BadImage(f"not a readable image ({exc})") from None
    if fmt == "JPEG":
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            raise BadImage("JPEG is truncated (no end-of-image marker after its last scan)")
    elif fmt == "WEBP":
        riff_len = struct.unpack("<I", data[4:8])[0] + 8
        if len(data) < riff_len:
            raise BadImage(f"WebP is truncated ({len(data)} of {riff_len} bytes)")
    if width < 1 or height < 1:
        raise BadImage(f"image has no pixels ({width}x{height})")
    return Checked(ext=KEPT_FORMATS.get(fmt or ""), width=width, height=height)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> RGB. 16/32-bit greyscale is scaled (Pillow's convert would clip at 255);
    transparency is dropped (alpha-composited on black), palette and CMYK are mapped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.int64)
        top = 65535 if img.mode != "I" or arr.max() > 255 else 255
        arr = np.clip(arr * 255 // top, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, img).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def open_rgb(data: bytes, max_side: int | None = None) -> Image.Image:
    """Decode bytes to an RGB PIL image; with `max_side`, JPEG decodes at a reduced scale
    (`draft`: 1/2, 1/4, 1/8 of the work) and the result is thumbnailed to that size."""
    try:
        img = Image.open(io.BytesIO(data))
        if max_side is not None and img.format == "JPEG":
            img.draft("RGB", (max_side, max_side))
        img.load()
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img = to_rgb(img)
    except DECODE_ERRORS as exc:
        raise BadImage(f"cannot be decoded ({exc})") from None
    if max_side is not None and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BILINEAR)
    return img


def decode_rgb(data: bytes, max_side: int | None = None) -> np.ndarray:
    """Image bytes of any format and mode -> uint8 (H, W, 3), writable (torch wants that)."""
    return np.array(open_rgb(data, max_side))


def to_square(img: Image.Image, size: int, resample: int = Image.BICUBIC) -> Image.Image:
    """Resize the shorter side to `size` and centre-crop: the usual ImageNet-style preparation."""
    if img.size == (size, size):
        return img
    return center_crop(resize_shorter(img, size, resample), size)


def resize_shorter(img: Image.Image, size: int, resample: int = Image.BICUBIC) -> Image.Image:
    """Scale so the shorter side is `size` px, keeping the aspect ratio."""
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    return img.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The centred `size` x `size` square of an image at least that large."""
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def encode_png(pixels: np.ndarray | Image.Image) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG bytes (lossless)."""
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_jpeg(pixels: np.ndarray | Image.Image, quality: int) -> bytes:
    """uint8 pixels -> JPEG bytes at `quality` (lossy; for smaller shards on request)."""
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
