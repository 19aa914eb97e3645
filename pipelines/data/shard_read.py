"""Reading chosen samples of one shard without touching the bytes of the others.

A sample's *position* is its index among the shard's usable samples (those with an image
member and a `.cls` member), which is the order the manifest counts and the label sidecar
records. Members of samples a reader does not own are skipped by their tar headers only
(seeked over on local files), so a reader pays neither I/O nor decoding for them, and it
stops at its last wanted position instead of walking the rest of the shard.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np

from pipelines.data.shard_io import IMAGE_EXTS, ShardReadError
from pipelines.specs.errors import DataError


@dataclass
class Sample:
    """One usable sample: its key, its position in the shard, image bytes and label."""

    key: str
    position: int
    image: bytes | None
    label: int


@dataclass
class ReadStats:
    """Samples passed over because they lack an image or a label (counted, not fatal)."""

    unlabeled: int = 0
    keys: list[str] = field(default_factory=list)

    def skip(self, key: str) -> None:
        self.unlabeled += 1
        if len(self.keys) < 20:
            self.keys.append(key)


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def check_exists(path: str) -> None:
    """One sentence naming a shard that the manifest lists but the disk does not hold."""
    if _is_local(path) and not os.path.exists(path.removeprefix("file://")):
        raise DataError(f"shard {path!r} named in the manifest does not exist: re-run ingest")


def _members(path: str) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    check_exists(path)
    # Local files open seekable ("r:") so skipped members are seeked over, not read;
    # remote ones stream ("r|").
    mode = "r:" if _is_local(path) else "r|"
    try:
        with fsspec.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode=mode) as tar:
            for member in tar:
                if member.isfile():
                    yield tar, member
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ShardReadError(f"shard {path!r} is truncated or not a tar file ({exc})") from None


def _grouped(
    path: str, wanted: Callable[[int], bool], images: bool
) -> Iterator[tuple[str, set[str], dict[str, bytes]]]:
    """(key, extensions present, bytes read) per sample in file order.

    A sample's bytes are read only when `wanted(position)` holds for the position it would
    take if usable (the count of usable samples before it); others cost a header each.
    """
    key: str | None = None
    exts: set[str] = set()
    data: dict[str, bytes] = {}
    usable = 0
    read_this = False
    for tar, member in _members(path):
        stem, _, ext = Path(member.name).name.partition(".")
        ext = ext.lower()
        if stem != key:
            if key is not None:
                yield key, exts, data
                usable += bool("cls" in exts and exts & IMAGE_SET)
            key, exts, data = stem, set(), {}
            read_this = wanted(usable)
        exts.add(ext)
        if read_this and (ext == "cls" or (images and ext in IMAGE_SET)):
            f = tar.extractfile(member)
            data[ext] = f.read() if f else b""
    if key is not None:
        yield key, exts, data


IMAGE_SET = frozenset(IMAGE_EXTS)


def read_samples(
    path: str,
    positions: Sequence[int] | None = None,
    *,
    images: bool = True,
    stats: ReadStats | None = None,
) -> Iterator[Sample]:
    """The samples at sorted `positions` (all when None), reading image bytes only if `images`.

    It stops reading the shard after the last wanted position. A `.cls` that is not a
    non-negative integer gives label -1 (kept in place so positions stay aligned) and counts
    as a skip.
    """
    want = None if positions is None else np.asarray(positions, dtype=np.int64)
    if want is not None and want.size == 0:
        return
    cursor = 0  # index into `want` of the next wanted position

    def wanted(position: int) -> bool:
        return want is None or (cursor < want.size and want[cursor] == position)

    position = 0
    for key, exts, data in _grouped(path, wanted, images):
        image_ext = next((e for e in IMAGE_EXTS if e in exts), None)
        if image_ext is None or "cls" not in exts:
            if stats is not None:
                stats.skip(key)
            continue
        if wanted(position):
            try:
                label = int(data["cls"].decode().strip())
            except ValueError:
                label = -1
            if label < 0 and stats is not None:
                stats.skip(key)
            yield Sample(key, position, data.get(image_ext), label)
            if want is not None:
                cursor += 1
                if cursor == want.size:
                    return
        position += 1
