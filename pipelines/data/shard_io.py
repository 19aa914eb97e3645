"""Reading and writing WebDataset tar shards: `<key>.png` + `<key>.cls` per sample.

Writing goes through the stock `webdataset.ShardWriter`; reading is a plain streaming tar
walk (no decoding, no dependencies) so a loader can skip samples it does not own for free.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import fsspec
import webdataset as wds

from pipelines.data.manifest import ShardInfo, sha256_file
from pipelines.errors import DataError

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "ppm", "bmp")


class ShardReadError(DataError):
    """A shard is truncated or not a tar file."""


def iter_shard(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {extension: bytes}) per sample, in file order."""
    key: str | None = None
    fields: dict[str, bytes] = {}
    try:
        with fsspec.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = Path(member.name).name
                stem, _, ext = name.partition(".")
                if key is not None and stem != key:
                    yield key, fields
                    fields = {}
                key = stem
                f = tar.extractfile(member)
                fields[ext.lower()] = f.read() if f else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ShardReadError(f"shard {path!r} is truncated or not a tar file ({exc})") from None
    if key is not None:
        yield key, fields


def image_bytes(fields: dict[str, bytes]) -> bytes | None:
    for ext in IMAGE_EXTS:
        if ext in fields:
            return fields[ext]
    return None


def write_shards(
    samples: Iterable[tuple[str, bytes, int]],
    out_dir: Path,
    *,
    prefix: str,
    max_count: int,
    max_bytes: int,
    relative_to: Path,
) -> list[ShardInfo]:
    """Write (key, png, label) samples into `out_dir/prefix-NNNNNN.tar`; return their infos."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    def opened(fname: str):
        counts[fname] = 0
        return open(fname, "wb")

    pattern = str(out_dir / f"{prefix}-%06d.tar")
    writer = wds.ShardWriter(
        pattern, maxcount=max_count, maxsize=max_bytes, verbose=0, opener=opened
    )
    try:
        for key, png, label in samples:
            writer.write({"__key__": key, "png": png, "cls": label})
            counts[writer.fname] += 1
    finally:
        writer.close()
    infos = []
    for fname, count in counts.items():
        if count == 0:
            Path(fname).unlink(missing_ok=True)
            continue
        p = Path(fname)
        infos.append(
            ShardInfo(
                path=str(p.relative_to(relative_to)),
                count=count,
                bytes=p.stat().st_size,
                sha256=sha256_file(p),
            )
        )
    return infos
