"""Streaming shards to training workers.

Each Ray Train worker (rank r of W) with D DataLoader processes has R = W * D readers. With
at least R shards, reader i reads shards i, i+R, ... (reshuffled every pass); with fewer,
every reader walks all shards and decodes only samples i, i+R, ... . Streams repeat
forever: an *epoch* is defined as `steps_per_epoch = train_count // (W * batch_size)`
steps on every rank, so all ranks take the same number of steps whatever the shard sizes
(DDP would hang otherwise) and one epoch covers about one pass over the training split.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from pipelines.data.augment import ImageTransform, transform_for
from pipelines.data.manifest import Manifest, Split, load_manifest, verify_shards
from pipelines.data.shard_io import image_bytes, iter_shard


@dataclass(frozen=True)
class ReaderSlot:
    """Which reader this process is among all readers of the job."""

    index: int
    count: int


def reader_slot(rank: int, world_size: int) -> ReaderSlot:
    info = get_worker_info()
    workers = info.num_workers if info else 1
    worker = info.id if info else 0
    return ReaderSlot(index=rank * workers + worker, count=world_size * workers)


def iter_labeled(paths: Sequence[str]) -> Iterator[tuple[bytes, int]]:
    """(image bytes, label) for every usable sample, in manifest order."""
    for path in paths:
        for _key, fields in iter_shard(path):
            img = image_bytes(fields)
            if img is None or "cls" not in fields:
                continue  # ingest counted and named these; the loader skips them alike
            yield img, int(fields["cls"].decode().strip())


class ShardStream(IterableDataset):
    """Samples of this reader's share of `shards`, decoded and transformed.

    `repeat=True` cycles forever with a fresh shuffle per pass (training); `repeat=False`
    makes one ordered pass (evaluation).
    """

    def __init__(
        self,
        shards: Sequence[str],
        transform: ImageTransform,
        *,
        rank: int = 0,
        world_size: int = 1,
        repeat: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 512,
    ) -> None:
        if not shards:
            raise ValueError("no shards to read: is the split empty in the manifest?")
        self.shards = list(shards)
        self.transform = transform
        self.rank, self.world_size = rank, world_size
        self.repeat, self.seed, self.shuffle_buffer = repeat, seed, shuffle_buffer

    def _owned(self, slot: ReaderSlot, rng: np.random.Generator) -> Iterator[tuple[bytes, int]]:
        shards = list(self.shards)
        if self.repeat:
            shards = [shards[i] for i in rng.permutation(len(shards))]
        if len(shards) >= slot.count:
            yield from iter_labeled(shards[slot.index :: slot.count])
        else:
            samples = iter_labeled(shards)
            yield from itertools.islice(samples, slot.index, None, slot.count)

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
        slot = reader_slot(self.rank, self.world_size)
        rng = np.random.default_rng([self.seed, slot.index])
        for _pass in itertools.count():
            items = self._owned(slot, rng)
            if self.repeat:
                items = self._shuffled(items, rng)
            produced = False
            for png, label in items:
                produced = True
                yield self.transform(png, rng), label
            if not self.repeat or not produced:
                return


class EncodedSamples(Dataset):
    """A labeled subset held as encoded bytes in memory: read from the shards once, not per
    epoch, so a 5% subset costs 5% of the decode work per epoch."""

    def __init__(self, samples: list[tuple[bytes, int]], transform: ImageTransform, seed: int):
        self.samples, self.transform, self.seed = samples, transform, seed
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._rng is None:
            info = get_worker_info()
            self._rng = np.random.default_rng([self.seed, info.id if info else 0])
        png, label = self.samples[i]
        return self.transform(png, self._rng), label

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]


def read_subset(paths: Sequence[str], indices: Sequence[int] | None) -> list[tuple[bytes, int]]:
    """The samples at `indices` (positions in manifest order), or all of them, in one pass."""
    if indices is None:
        return list(iter_labeled(paths))
    wanted = set(indices)
    return [s for i, s in enumerate(iter_labeled(paths)) if i in wanted]


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
        return cls(path, manifest)

    def shards(self, split: Split) -> list[str]:
        return self.manifest.shard_paths(self.data_dir, split)

    def steps_per_epoch(self, world_size: int, batch_size: int) -> int:
        return max(1, self.manifest.counts["train"] // (world_size * batch_size))

    def train_loader(
        self,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 1,
        seed: int = 0,
    ) -> DataLoader:
        """An endless loader of augmented batches for this rank; take steps_per_epoch a time."""
        stream = ShardStream(
            self.shards("train"),
            transform_for(self.manifest, train=True),
            rank=rank,
            world_size=world_size,
            seed=seed,
        )
        return DataLoader(
            stream,
            batch_size=batch_size,
            num_workers=num_workers,
            drop_last=True,
            persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None,
        )

    def eval_loader(self, split: Split, batch_size: int, num_workers: int = 0) -> DataLoader:
        """One ordered pass over a split, no augmentation."""
        stream = ShardStream(
            self.shards(split), transform_for(self.manifest, train=False), repeat=False
        )
        return DataLoader(stream, batch_size=batch_size, num_workers=num_workers)

    def train_labels(self) -> list[int]:
        return [label for _, label in iter_labeled(self.shards("train"))]
