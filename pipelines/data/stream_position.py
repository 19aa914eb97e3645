"""Where a training stream stands, so a resumed run continues it instead of reseeding it.

A training loader is an endless stream of passes (`ShardStream`); its consumer takes
batches round-robin from the loader's D processes (DataLoader order: process 0, 1, ...,
D-1, 0, ...), each process filling whole batches from its own reader's share. So "B batches
taken since pass P began" fixes, for every reader, how many samples it has yielded and
which process delivers the next batch: a loader rebuilt from that position yields exactly
the batches the stopped one would have yielded next. A run resumed with another shape
(ranks, loader processes, batch size) cannot continue the same stream: it starts at the
first pass none of the old readers had begun.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StreamPosition:
    """`batches` of `batch_size` taken from each rank's loader since pass `first_pass` began,
    with `loader_workers` processes per rank (0: in the rank itself) on `world_size` ranks."""

    first_pass: int = 0
    batches: int = 0
    batch_size: int = 0
    loader_workers: int = 0
    world_size: int = 1

    @property
    def processes(self) -> int:
        return max(1, self.loader_workers)

    def advanced(self, batches: int) -> StreamPosition:
        return StreamPosition(
            self.first_pass,
            self.batches + batches,
            self.batch_size,
            self.loader_workers,
            self.world_size,
        )

    def reader_start(self, process: int, processes: int) -> tuple[int, int]:
        """(which old process this new `process` of `processes` continues, samples it had
        yielded).

        Process i of the rebuilt loader continues old process (i + B mod D) mod D, so the
        rebuilt loader's first batch (from its process 0) is the one the old loader would
        have delivered next. A position past the start holds only for its own shape
        (`for_loader` makes one that fits)."""
        d = max(1, processes)
        if self.batches and d != self.processes:
            raise ValueError("a stream position is continued by a loader of another shape")
        rotation = self.batches % d
        old = (process + rotation) % d
        taken = self.batches // d + (1 if old < rotation else 0)
        return old, taken * self.batch_size

    def for_loader(
        self, batch_size: int, loader_workers: int, world_size: int, pass_size: int
    ) -> StreamPosition:
        """This position for a loader of the given shape: itself when the shape matches;
        else position 0 of the first pass that no reader had begun (`pass_size`: samples
        per pass over all readers)."""
        if (batch_size, max(1, loader_workers), world_size) == (
            self.batch_size,
            self.processes,
            self.world_size,
        ):
            return self
        read = self.batches * self.batch_size * self.world_size
        begun = -(-read // max(1, pass_size)) + 1 if read else 0
        return StreamPosition(self.first_pass + begun, 0, batch_size, loader_workers, world_size)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StreamPosition:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})
