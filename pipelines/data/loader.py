"""Streaming shards to training workers.

Each Ray Train worker (rank r of W) with D DataLoader processes has R = W * D readers. Every
pass all readers apply one shared shard permutation and split the chosen samples exactly
(`pipelines.data.partition`): one pass reads each chosen sample once, whatever the shard
count. Training streams repeat forever: an *epoch* is `steps_per_epoch = train_count //
(W * batch_size)` steps on every rank, so all ranks take the same number of steps whatever
the shard sizes (DDP would hang otherwise) and one epoch covers about one pass.

A labeled subset is streamed the same way, chosen by position (`indices`, manifest order):
nothing holds a split's bytes in memory, only the O(n) index set.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipelines.data.augment import ImageTransform, transform_for
from pipelines.data.device_decode import CropPlan, DeviceDecodedBatches, collate_planned
from pipelines.data.labels import split_labels
from pipelines.data.manifest import Manifest, Split, load_manifest, verify_shards
from pipelines.data.partition import (
    Piece,
    ReaderSlot,
    Selection,
    reader_pieces,
    reader_slot,
)
from pipelines.data.shard_read import (
    LocatedSamples,
    ReadStats,
    Sample,
    check_exists,
    is_local,
    locate_samples,
    read_located,
    read_samples,
)
from pipelines.data.stream_position import StreamPosition
from pipelines.specs.errors import DataError

__all__ = ["ReaderSlot", "ShardData", "ShardStream", "StreamPosition", "reader_slot"]


class ShardStream(IterableDataset):
    """This reader's share of the chosen samples of `shards`, decoded and transformed.

    `shuffle=True` permutes shards per pass (shared by all readers) and shuffles within a
    per-reader buffer seeded by (seed, pass, reader); `passes=None` repeats forever
    (training), `passes=1` is one pass (evaluation, with `shuffle=False`: shard order).
    """

    def __init__(
        self,
        shards: Sequence[str],
        counts: Sequence[int],
        transform: ImageTransform | CropPlan,
        *,
        indices: Sequence[int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        passes: int | None = None,
        seed: int = 0,
        shuffle_buffer: int = 512,
        start: StreamPosition | None = None,
    ) -> None:
        if not shards:
            raise DataError("no shards to read: is the split empty in the manifest?")
        if len(shards) != len(counts):
            raise ValueError("one sample count per shard is needed to split the shards")
        self.shards = list(shards)
        self.selection = Selection(counts, indices)
        if len(self.selection) == 0:
            raise DataError("the chosen subset of the shards is empty")
        self.transform = transform
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.passes = shuffle, passes
        self.seed, self.shuffle_buffer = seed, shuffle_buffer
        self.start = start or StreamPosition(world_size=world_size)
        self.stats = ReadStats()
        self._located: dict[int, LocatedSamples] = {}

    def pieces(self, slot: ReaderSlot, pass_no: int) -> list[Piece]:
        return reader_pieces(
            self.selection.chosen_counts(),
            slot,
            seed=self.seed,
            pass_no=pass_no,
            shuffle=self.shuffle,
        )

    def pass_samples(self, slot: ReaderSlot, pass_no: int) -> Iterator[Sample]:
        """The undecoded samples this reader owns in this pass (shuffled if `shuffle`).

        The DataLoader path and the partition tests both go through here."""
        items = self._owned(slot, pass_no)
        if self.shuffle:
            items = self._shuffled(items, np.random.default_rng(self._rng_key(slot, pass_no)))
        return items

    def _rng_key(self, slot: ReaderSlot, pass_no: int) -> list[int]:
        return [self.seed, pass_no, slot.index, slot.count]

    def _owned(self, slot: ReaderSlot, pass_no: int) -> Iterator[Sample]:
        for piece in self.pieces(slot, pass_no):
            positions = self.selection.positions(piece)
            for sample in self._read(piece.shard, positions):
                if sample.label >= 0:
                    yield sample

    def _read(self, shard: int, positions: np.ndarray) -> Iterator[Sample]:
        """A subset of a local shard is located once per process (one header walk), then
        read by seeks; a whole split, or a remote shard, is walked in file order."""
        path = self.shards[shard]
        chosen = self.selection.shard_positions(shard)
        if chosen is None or not is_local(path):
            return read_samples(path, positions, stats=self.stats)
        if shard not in self._located:
            self._located[shard] = locate_samples(path, chosen, stats=self.stats)
        return read_located(path, self._located[shard], positions)

    def __getstate__(self) -> dict:
        # What a process located stays with it: a DataLoader process gets the stream
        # without it (a pickle of a few KB) and locates its own shards.
        return {**self.__dict__, "_located": {}}

    def _shuffled(self, items: Iterator, rng: np.random.Generator) -> Iterator:
        buffer: list = []
        for item in items:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            j = rng.integers(len(buffer))
            buffer[j], item = item, buffer[j]
            yield item
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = get_worker_info()
        process = info.id if info else 0
        # Continue the stream at `start`: this process takes over an old reader's share
        # and passes over what that reader had already yielded (`StreamPosition`).
        processes = info.num_workers if info else 1
        old, skip = self.start.reader_start(process, processes)
        slot = ReaderSlot(self.rank * processes + old, self.world_size * processes)
        first = self.start.first_pass
        passes = itertools.count(first) if self.passes is None else range(first, self.passes)
        for pass_no in passes:
            owned = sum(p.stop - p.first for p in self.pieces(slot, pass_no))
            if owned == 0:
                return  # this reader owns nothing (fewer chosen samples than readers)
            if skip >= owned:  # a whole pass already read: skip it without reading it
                skip -= owned
                continue
            key = self._rng_key(slot, pass_no)
            samples = self.pass_samples(slot, pass_no)
            for i, sample in enumerate(samples):
                if i < skip:
                    continue
                # Each sample's augmentation draws come from its own generator, keyed by
                # its place in the pass: the same draws whether or not the stream resumed.
                rng = np.random.default_rng([*key, 1, i])
                yield self.transform(sample.image, rng), sample.label
            skip = 0


@dataclass
class ShardData:
    """One ingested data dir: its manifest and the loaders built from it."""

    data_dir: Path
    manifest: Manifest

    @classmethod
    def open(cls, data_dir: str | Path, *, verify: bool = False) -> ShardData:
        path = Path(data_dir).expanduser()
        manifest = load_manifest(path)
        if verify:
            verify_shards(path, manifest)
        data = cls(path, manifest)
        for split in ("train", "val", "test"):
            for shard in data.shards(split):
                check_exists(shard)
        return data

    def shards(self, split: Split) -> list[str]:
        return self.manifest.shard_paths(self.data_dir, split)

    def counts(self, split: Split) -> list[int]:
        return [s.count for s in self.manifest.shards.get(split, [])]

    def labels(self, split: Split = "train") -> np.ndarray:
        """Every sample's label in manifest order, without reading image bytes."""
        return split_labels(self.data_dir, self.manifest, split)

    def steps_per_epoch(self, world_size: int, batch_size: int) -> int:
        return max(1, self.manifest.counts["train"] // (world_size * batch_size))

    def _transform(
        self, train: bool, image_size: int | None, decode_on: torch.device | None
    ) -> ImageTransform | CropPlan:
        """The per-sample transform; with `decode_on`, large images are only planned in the
        loader processes and decoded and cropped on that device (`device_decode`)."""
        transform = transform_for(self.manifest, train=train, image_size=image_size)
        return transform if decode_on is None or transform.small else CropPlan(transform)

    def _loader(
        self,
        stream: ShardStream,
        batch_size: int,
        num_workers: int,
        decode_on: torch.device | None,
        **kw,
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 batches from `num_workers` processes (0: this one)."""
        planned = isinstance(stream.transform, CropPlan)
        if planned:
            kw["collate_fn"] = collate_planned
        loader = DataLoader(
            stream,
            batch_size=batch_size,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None,
            pin_memory=torch.cuda.is_available() and not planned,
            **kw,
        )
        if planned:
            return DeviceDecodedBatches(loader, stream.transform.transform.size, decode_on)
        return loader

    def train_loader(
        self,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 1,
        seed: int = 0,
        image_size: int | None = None,
        indices: Sequence[int] | None = None,
        decode_on: torch.device | None = None,
        start: StreamPosition | None = None,
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """An endless loader of augmented uint8 batches for this rank (take steps_per_epoch
        a time), over the whole training split or the samples at `indices`, from `start`
        (a position saved by an earlier run of the same seed; default: the beginning)."""
        stream = ShardStream(
            self.shards("train"),
            self.counts("train"),
            self._transform(True, image_size, decode_on),
            indices=indices,
            rank=rank,
            world_size=world_size,
            seed=seed,
        )
        if start is not None:
            stream.start = start.for_loader(
                batch_size, num_workers, world_size, len(stream.selection)
            )
        return self._loader(stream, batch_size, num_workers, decode_on, drop_last=True)

    def eval_loader(
        self,
        split: Split,
        batch_size: int,
        num_workers: int = 0,
        *,
        image_size: int | None = None,
        decode_on: torch.device | None = None,
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over a split in shard order, no augmentation; uint8 batches."""
        stream = ShardStream(
            self.shards(split),
            self.counts(split),
            self._transform(False, image_size, decode_on),
            shuffle=False,
            passes=1,
        )
        return self._loader(stream, batch_size, num_workers, decode_on)
