"""Checkpoints that do not stall training: snapshot on the training thread, write in a
background thread, report the finished directory at a later step boundary.

Ray Train V2 wants `ray.train.report` from the training thread, and every rank must call it
the same number of times (it is a barrier). So the *when* is decided by step numbers alone,
identical on every rank: a checkpoint taken at step s is reported at step s + `lag` (or at
the end), by which time its files are usually written; rank 0 joins the writer there, and
Ray uploads the directory asynchronously (`CheckpointUploadMode.ASYNC`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.training.checkpoint import write_training_state


@dataclass
class PendingCheckpoint:
    step: int
    report_at: int
    metrics: dict
    directory: Path | None = None  # rank 0 only
    thread: threading.Thread | None = None
    error: list[BaseException] = field(default_factory=list)


class CheckpointSchedule:
    """When to checkpoint: every `every` steps and/or every `minutes` (the clock is rank
    0's, agreed through `agree`, so all ranks decide alike). Time is checked only at
    `check_every` step multiples, where the caller already syncs."""

    def __init__(
        self, every: int | None, minutes: float | None, check_every: int, now=time.monotonic
    ) -> None:
        self.every, self.minutes, self.check_every, self._now = every, minutes, check_every, now
        self._last = now()

    def due(self, step: int, agree=lambda flag: flag) -> bool:
        by_steps = bool(self.every) and step % self.every == 0
        by_time = False
        if self.minutes and step % self.check_every == 0:
            by_time = agree(self._now() - self._last >= self.minutes * 60)
        if by_steps or by_time:
            self._last = self._now()
            return True
        return False


class AsyncCheckpointer:
    """Rank 0 writes snapshots in a thread; every rank reports at the same steps."""

    def __init__(self, rank: int, lag: int, report_fn) -> None:
        self.rank, self.lag, self._report = rank, lag, report_fn
        self.pending: PendingCheckpoint | None = None
        self.stall_seconds = 0.0  # training-thread time spent on checkpoints

    def take(self, step: int, metrics: dict, snapshot) -> None:
        """Start a checkpoint of step `step`; `snapshot()` (rank 0 only) returns the state
        on the host. An earlier one still pending is reported first."""
        tick = time.perf_counter()
        if self.pending is not None:
            self.flush()
        pending = PendingCheckpoint(step=step, report_at=step + self.lag, metrics=metrics)
        if self.rank == 0:
            state = snapshot()
            pending.directory = Path(tempfile.mkdtemp(prefix=f"selfie-ckpt-{step:08d}-"))

            def write() -> None:
                try:
                    write_training_state(pending.directory, state)
                except BaseException as exc:  # re-raised on the training thread
                    pending.error.append(exc)

            pending.thread = threading.Thread(target=write, name="checkpoint-writer", daemon=True)
            pending.thread.start()
        self.pending = pending
        self.stall_seconds += time.perf_counter() - tick

    def maybe_report(self, step: int) -> None:
        if self.pending is not None and step >= self.pending.report_at:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Report the pending checkpoint now (joining its writer on rank 0)."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        tick = time.perf_counter()
        directory = None
        if self.rank == 0:
            pending.thread.join()
            if pending.error:
                shutil.rmtree(pending.directory, ignore_errors=True)
                raise pending.error[0]
            directory = pending.directory
        self._report(pending.metrics, directory, pending.step, final)
        self.stall_seconds += time.perf_counter() - tick
