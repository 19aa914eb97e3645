"""Reading and writing WebDataset tar shards: `<key>.<jpg|png|webp>` + `<key>.cls` per sample.

Writing is a plain tar with fixed metadata (mtime 0, no owner), so the same samples give the
same bytes and the same sha256 on every run and whatever the worker count; the checksum is
taken while writing, so the shard is read once. Reading is a streaming tar walk (no decoding);
`scan_tar` reads only headers and labels, seeking over image bytes, so indexing existing
shards costs a few kB of reading per sample however large the images are.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec

from pipelines.specs.errors import DataError

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp")
# WebDataset's rule: the key is the path up to the first dot of the file's base name.
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


class ShardReadError(DataError):
    """A shard is truncated or not a tar file."""


def split_name(name: str) -> tuple[str, str]:
    """`dir/n0001_12.jpg` -> (`dir/n0001_12`, `jpg`), as WebDataset groups files."""
    m = _KEY_EXT.match(name)
    return (m.group(1), m.group(2).lower()) if m else (name, "")


def iter_shard(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {extension: bytes}) per sample, in file order."""
    key: str | None = None
    fields: dict[str, bytes] = {}
    try:
        with fsspec.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stem, ext = split_name(member.name)
                if key is not None and stem != key:
                    yield key, fields
                    fields = {}
                key = stem
                f = tar.extractfile(member)
                fields[ext] = f.read() if f else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ShardReadError(f"shard {path!r} is truncated or not a tar file ({exc})") from None
    if key is not None:
        yield key, fields


def image_bytes(fields: dict[str, bytes]) -> bytes | None:
    for ext in IMAGE_EXTS:
        if ext in fields:
            return fields[ext]
    return None


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through it."""

    def __init__(self, f) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self.f.write(b)


@dataclass(frozen=True)
class Written:
    path: Path
    bytes: int
    sha256: str


def write_tar(path: Path, samples: Iterable[tuple[str, str, bytes, int]]) -> Written:
    """Write (key, image extension, image bytes, label) samples as one shard, deterministically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        out = _HashingWriter(f)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for key, ext, data, label in samples:
                for name, payload in ((f"{key}.{ext}", data), (f"{key}.cls", str(label).encode())):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(payload), 0, 0o644
                    tar.addfile(info, io.BytesIO(payload))
        f.flush()
        os.fsync(f.fileno())
    return Written(path=path, bytes=out.size, sha256=out.sha.hexdigest())


@dataclass(frozen=True)
class ScannedSample:
    """One sample of an existing shard, located but not read: where its image bytes lie."""

    key: str
    image_ext: str | None
    offset: int
    size: int
    label: int | None
    problem: str | None = None


def scan_tar(path: str) -> Iterator[ScannedSample]:
    """Walk a local shard's headers; read only `.cls` members. Raise ShardReadError if cut."""
    file_size = os.path.getsize(path)
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    end = 0
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.offset_data + member.size > file_size:
                    raise tarfile.ReadError(f"member {member.name!r} runs past the end")
                end = max(end, member.offset_data + member.size)
                if not member.isfile():
                    continue
                stem, ext = split_name(member.name)
                groups.setdefault(stem, {})[ext] = member
            labels = {}
            for stem, fields in groups.items():
                if "cls" in fields:
                    f = tar.extractfile(fields["cls"])
                    labels[stem] = f.read() if f else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ShardReadError(f"shard {path!r} is truncated or not a tar file ({exc})") from None
    padded = -(-end // 512) * 512
    if file_size < padded + 512 or not _only_zero_blocks(path, end, file_size):
        # A complete tar ends with zero blocks; a cut one ends in a header or right after data.
        raise ShardReadError(
            f"shard {path!r} is truncated (it lacks the tar end-of-archive blocks)"
        )
    for stem, fields in groups.items():
        ext = next((e for e in IMAGE_EXTS if e in fields), None)
        yield _sample(stem, ext, fields, labels.get(stem))


def _only_zero_blocks(path: str, start: int, end: int) -> bool:
    """A tar ends with zero blocks; anything else after the last member is a cut header."""
    with open(path, "rb") as f:
        f.seek(start)
        return not f.read(end - start).strip(b"\0")


def _sample(stem: str, ext: str | None, fields: dict, raw_label: bytes | None) -> ScannedSample:
    image = fields.get(ext) if ext else None
    offset, size = (image.offset_data, image.size) if image else (0, 0)
    label, problem = None, None
    if image is None or raw_label is None:
        problem = "sample lacks an image or a cls label"
    else:
        try:
            label = int(raw_label.decode().strip())
        except ValueError:
            problem = f"cls label {raw_label[:20]!r} is not an integer"
        if label is not None and label < 0:
            label, problem = None, f"cls label {label} is negative"
    return ScannedSample(stem, ext, offset, size, label, problem)


def read_range(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)
