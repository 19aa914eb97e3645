"""Reading chosen samples of one shard without touching the bytes of the others.

A sample's *position* is its index among the shard's usable samples (those with an image
member and a `.cls` member), which is the order the manifest counts and the label sidecar
records. Members of samples a reader does not own are skipped by their tar headers only
(seeked over on local files), so a reader pays neither I/O nor decoding for them, and it
stops at its last wanted position instead of walking the rest of the shard.

A sparse subset (a 5% labeled split) read pass after pass would still parse every header of
its shards each pass: on the digits that was half of a finetune trial's time. So a reader of
a local shard can `locate_samples` once (one header walk, the labels read, the image bytes
not) and then `read_located` seeks straight to the image bytes of the positions it owns.
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
    image_span: tuple[int, int] | None = None  # (offset, size) of the image member, local files


@dataclass
class ReadStats:
    """Samples passed over because they lack an image or a label (counted, not fatal)."""

    unlabeled: int = 0
    keys: list[str] = field(default_factory=list)

    def skip(self, key: str) -> None:
        self.unlabeled += 1
        if len(self.keys) < 20:
            self.keys.append(key)


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def check_exists(path: str) -> None:
    """One sentence naming a shard that the manifest lists but the disk does not hold."""
    if is_local(path) and not os.path.exists(path.removeprefix("file://")):
        raise DataError(f"shard {path!r} named in the manifest does not exist: re-run ingest")


def _members(path: str) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    check_exists(path)
    # Local files open seekable ("r:") so skipped members are seeked over, not read;
    # remote ones stream ("r|").
    mode = "r:" if is_local(path) else "r|"
    try:
        with fsspec.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode=mode) as tar:
            for member in tar:
                if member.isfile():
                    yield tar, member
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ShardReadError(f"shard {path!r} is truncated or not a tar file ({exc})") from None


@dataclass
class _Grouped:
    """One sample's members as met in file order: extensions present, the bytes read, and
    where each member's data lies in the file (for `locate_samples`)."""

    key: str
    exts: set[str] = field(default_factory=set)
    data: dict[str, bytes] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)


def _grouped(path: str, wanted: Callable[[int], bool], images: bool) -> Iterator[_Grouped]:
    """Each sample's members, in file order.

    A sample's bytes are read only when `wanted(position)` holds for the position it would
    take if usable (the count of usable samples before it); others cost a header each.
    """
    group: _Grouped | None = None
    usable = 0
    read_this = False
    for tar, member in _members(path):
        stem, _, ext = Path(member.name).name.partition(".")
        ext = ext.lower()
        if group is None or stem != group.key:
            if group is not None:
                yield group
                usable += bool("cls" in group.exts and group.exts & IMAGE_SET)
            group = _Grouped(stem)
            read_this = wanted(usable)
        group.exts.add(ext)
        if read_this:
            group.spans[ext] = (member.offset_data, member.size)
            if ext == "cls" or (images and ext in IMAGE_SET):
                f = tar.extractfile(member)
                group.data[ext] = f.read() if f else b""
    if group is not None:
        yield group


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
    for group in _grouped(path, wanted, images):
        image_ext = next((e for e in IMAGE_EXTS if e in group.exts), None)
        if image_ext is None or "cls" not in group.exts:
            if stats is not None:
                stats.skip(group.key)
            continue
        if wanted(position):
            try:
                label = int(group.data["cls"].decode().strip())
            except ValueError:
                label = -1
            if label < 0 and stats is not None:
                stats.skip(group.key)
            span = group.spans.get(image_ext) if is_local(path) else None
            yield Sample(group.key, position, group.data.get(image_ext), label, span)
            if want is not None:
                cursor += 1
                if cursor == want.size:
                    return
        position += 1


@dataclass(frozen=True)
class LocatedSamples:
    """Where the chosen samples of one local shard lie: O(chosen) numbers, no image bytes."""

    positions: np.ndarray  # sorted positions in the shard
    keys: list[str]
    labels: np.ndarray
    offsets: np.ndarray  # of each image member's data in the file
    sizes: np.ndarray


def locate_samples(
    path: str, positions: Sequence[int], *, stats: ReadStats | None = None
) -> LocatedSamples:
    """One walk over a local shard's headers, reading only the labels of `positions`."""
    found = list(read_samples(path, positions, images=False, stats=stats))
    spans = np.array([s.image_span for s in found], dtype=np.int64).reshape(-1, 2)
    return LocatedSamples(
        positions=np.array([s.position for s in found], dtype=np.int64),
        keys=[s.key for s in found],
        labels=np.array([s.label for s in found], dtype=np.int64),
        offsets=spans[:, 0],
        sizes=spans[:, 1],
    )


def read_located(path: str, located: LocatedSamples, positions: Sequence[int]) -> Iterator[Sample]:
    """The samples at sorted `positions` that `located` holds, each by one seek and one read."""
    wanted = np.asarray(positions, dtype=np.int64)
    rows = np.searchsorted(located.positions, wanted)
    rows = rows[rows < len(located.positions)]
    rows = rows[np.isin(located.positions[rows], wanted)]
    try:
        with open(path.removeprefix("file://"), "rb") as f:
            for row in rows.tolist():
                offset, size = int(located.offsets[row]), int(located.sizes[row])
                f.seek(offset)
                image = f.read(size)
                if len(image) != size:
                    raise OSError(f"{size} bytes expected at offset {offset}, {len(image)} read")
                key, label = located.keys[row], int(located.labels[row])
                yield Sample(key, int(located.positions[row]), image, label, (offset, size))
    except OSError as exc:
        raise ShardReadError(f"shard {path!r} changed or cannot be read ({exc})") from None
