"""The work of one output shard, run in a worker process: read its files (or take its slice
of pixels), check or re-encode each image, write the tar, and return what the manifest needs.

A task is self-contained and names its output file, so tasks run in any order on any number
of processes and the shards come out byte-identical. The module imports no pydantic specs, so
worker processes start light.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.data.images import (
    BadImage,
    check_image,
    decode_rgb,
    encode_jpeg,
    encode_png,
    open_rgb,
    resize_shorter,
    to_square,
)
from pipelines.data.shard_io import (
    ScannedSample,
    ShardReadError,
    read_range,
    scan_tar,
    write_tar,
)
from pipelines.ingest.pixel_stats import STATS_SIDE, PixelSums
from pipelines.ingest.sources import EntryError


@dataclass(frozen=True)
class EncodeOptions:
    """How samples are stored: kept as they are unless a size or an encoding is asked for."""

    image_size: int | None = None  # resize the shorter side and centre-crop to a square
    resize: int | None = None  # resize the shorter side only
    reencode: str = "keep"  # keep | jpeg | png
    jpeg_quality: int = 90
    on_error: str = "fail"

    @property
    def changes_pixels(self) -> bool:
        return bool(self.image_size or self.resize)


@dataclass
class ShardTask:
    path: str
    split: str
    first: int  # position in the split of the shard's first sample (names the keys)
    labels: list[int]
    files: list[str] | None = None  # file sources: one path per sample
    pixels: np.ndarray | None = None  # array sources: (n, H, W[, 3]) uint8
    stats_at: list[int] = field(default_factory=list)  # positions in the statistics sample
    options: EncodeOptions = field(default_factory=EncodeOptions)


@dataclass
class ShardOutcome:
    path: str
    count: int
    bytes: int
    sha256: str
    labels: list[int]
    skipped: list[tuple[str, str]]
    sums: PixelSums
    bytes_in: int = 0  # bytes of the source files read
    payload_out: int = 0  # bytes of image payload written (equals bytes_in when kept)
    formats: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU seconds the task took in its worker
    # (width, height) of the stored images, two at most: one means they all share it.
    sizes: set[tuple[int, int]] = field(default_factory=set)


def stored_size(data: bytes) -> tuple[int, int]:
    """(width, height) of stored image bytes, from the header alone (Pillow opens lazily:
    no pixel is decoded)."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def common_square_side(outcomes: list[ShardOutcome]) -> int | None:
    """The side every stored image shares when all are the same square, else None."""
    sizes = set().union(*(o.sizes for o in outcomes))
    if len(sizes) != 1:
        return None
    ((width, height),) = sizes
    return width if width == height else None


def _transform(img: Image.Image, opts: EncodeOptions) -> Image.Image:
    if opts.image_size:
        return to_square(img, opts.image_size)
    if opts.resize:
        return resize_shorter(img, opts.resize)
    return img


_EXT = {"jpeg": "jpg", "png": "png"}


def _encode(img: Image.Image | np.ndarray, fmt: str, quality: int) -> tuple[str, bytes]:
    """Pixels -> (extension, bytes): JPEG at `quality`, or lossless PNG."""
    if fmt == "jpeg":
        return "jpg", encode_jpeg(img, quality)
    return "png", encode_png(img)


def prepare_file(data: bytes, opts: EncodeOptions) -> tuple[str, bytes]:
    """(extension, bytes to store) for one source file; raise BadImage if it is unusable.

    JPEG/PNG/WebP are stored byte for byte under the extension of their real format (a PNG
    named `.jpg` is stored as `.png`); other formats (BMP, GIF, TIFF, PPM) become PNG. When
    pixels change (`image_size`, `resize`) they are encoded as `reencode` asks; with `keep`,
    a JPEG stays JPEG (at `jpeg_quality`: resizing is asked for to get smaller shards) and
    anything else becomes PNG. A file already in the asked format is never re-encoded.
    """
    checked = check_image(data)
    same_format = opts.reencode == "keep" or _EXT[opts.reencode] == checked.ext
    if checked.ext and same_format and not opts.changes_pixels:
        return checked.ext, data
    keep_as = "jpeg" if checked.ext == "jpg" else "png"
    fmt = keep_as if opts.reencode == "keep" else opts.reencode
    return _encode(_transform(open_rgb(data), opts), fmt, opts.jpeg_quality)


def prepare_pixels(pixels: np.ndarray, opts: EncodeOptions) -> tuple[str, bytes]:
    """Decoded pixels (sources with no files) -> stored bytes, PNG unless JPEG is asked for."""
    if opts.changes_pixels:
        pixels = np.asarray(_transform(Image.fromarray(pixels), opts))
    return _encode(pixels, "jpeg" if opts.reencode == "jpeg" else "png", opts.jpeg_quality)


def build_shard(task: ShardTask) -> ShardOutcome:
    """Write one shard from its samples; bad images are skipped (counted) or stop the ingest."""
    opts = task.options
    cpu_start = time.process_time()
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    sums = PixelSums()
    totals = {"in": 0, "out": 0}
    formats: dict[str, int] = {}
    sizes: set[tuple[int, int]] = set()
    stats_at = set(task.stats_at)

    def samples():
        for i, label in enumerate(task.labels):
            name = task.files[i] if task.files is not None else f"{task.split}[{task.first + i}]"
            try:
                if task.files is not None:
                    data = _read(name)
                    totals["in"] += len(data)
                    ext, out = prepare_file(data, opts)
                else:
                    ext, out = prepare_pixels(task.pixels[i], opts)  # type: ignore[index]
            except BadImage as exc:
                if opts.on_error == "fail":
                    raise EntryError(
                        f"image {name!r} cannot be decoded: {exc}; fix or remove it, or re-run "
                        "with --on-error skip"
                    ) from None
                skipped.append((name, f"cannot be decoded: {exc}"))
                continue
            if i in stats_at:
                sums.add(decode_rgb(out, max_side=STATS_SIDE))
            if len(sizes) < 2:  # past two, the images are known to differ
                sizes.add(stored_size(out))
            kept.append(label)
            totals["out"] += len(out)
            formats[ext] = formats.get(ext, 0) + 1
            yield f"{task.split}-{task.first + i:08d}", ext, out, label

    written = write_tar(Path(task.path), samples())
    if not kept:
        Path(task.path).unlink(missing_ok=True)
    return ShardOutcome(
        path=task.path,
        count=len(kept),
        bytes=written.bytes,
        sha256=written.sha256,
        labels=kept,
        skipped=skipped,
        sums=sums,
        bytes_in=totals["in"],
        payload_out=totals["out"],
        formats=formats,
        cpu_s=time.process_time() - cpu_start,
        sizes=sizes,
    )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise BadImage(f"cannot be read ({exc.strerror or exc})") from None


@dataclass
class IndexedShard:
    """An existing shard, walked without decoding: its usable samples and their labels."""

    path: str
    labels: np.ndarray  # int32, usable samples in file order
    offsets: np.ndarray  # int64, where each usable sample's image bytes lie
    sizes: np.ndarray  # int64
    skipped: list[tuple[str, str]]
    sha256: str = ""
    bytes: int = 0
    error: str | None = None  # the shard as a whole is unreadable (cut short, not a tar)


def index_shard(path: str) -> IndexedShard:
    """Walk headers and labels of one shard and checksum it; never decodes an image."""
    usable: list[ScannedSample] = []
    skipped: list[tuple[str, str]] = []
    try:
        for s in scan_tar(path):
            if s.problem:
                skipped.append((f"{path}:{s.key}", s.problem))
            else:
                usable.append(s)
    except ShardReadError as exc:
        none = np.zeros(0, dtype=np.int64)
        return IndexedShard(path, none.astype(np.int32), none, none, [], error=str(exc))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return IndexedShard(
        path=path,
        labels=np.array([s.label for s in usable], dtype=np.int32),
        offsets=np.array([s.offset for s in usable], dtype=np.int64),
        sizes=np.array([s.size for s in usable], dtype=np.int64),
        skipped=skipped,
        sha256=h.hexdigest(),
        bytes=Path(path).stat().st_size,
    )


@dataclass
class StatsTask:
    path: str
    ranges: list[tuple[int, int]]  # (offset, size) of the sampled images in the shard


def sample_stats(task: StatsTask) -> PixelSums:
    """Pixel sums over a shard's sampled images, decoded at a reduced scale; bad ones skipped
    (the loader meets them too, and the manifest already counts them)."""
    sums = PixelSums()
    for offset, size in task.ranges:
        try:
            sums.add(decode_rgb(read_range(task.path, offset, size), max_side=STATS_SIDE))
        except BadImage:
            continue
    return sums
