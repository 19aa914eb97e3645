"""Progress of a running job, one way for every stage: a driver or worker calls
`report_progress(stage, done, total, **figures)`, nothing else.

Where it goes is decided once, not by each stage: in a job (the service's backends set
`SELFIE_PROGRESS_LINES=1` in its environment, which Ray hands on to its workers) every
process prints it as one line of JSON in the job's log, for the live view the client shows
(`selfie logs -f`, `selfie submit --follow`, `make demo`); the CLI also shows the stages it
runs in its own process on a terminal bar (`shown_by`). The raw log keeps every line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipelines.specs.names import PROGRESS_ENV, PROGRESS_MARKER

Sink = Callable[[dict[str, Any]], None]
_shown_by: Sink | None = None  # this process's viewer of its own progress (the CLI's bar)


def report_progress(stage: str, done: int, total: int | None = None, **figures: Any) -> None:
    """Report a stage's work done (of the total), with a few figures."""
    line = {"stage": stage, "done": done, "total": total, **figures}
    if _shown_by is not None:
        _shown_by(line)
    if os.environ.get(PROGRESS_ENV) == "1":
        print(PROGRESS_MARKER + json.dumps(line, default=float), flush=True)


@contextmanager
def shown_by(sink: Sink) -> Iterator[None]:
    """While inside, this process's progress also goes to `sink` (one record a call)."""
    global _shown_by
    previous, _shown_by = _shown_by, sink
    try:
        yield
    finally:
        _shown_by = previous


class ProgressCounter:
    """Counts items done by a stage and reports every `every` items, and at the end."""

    def __init__(self, stage: str, total: int | None, every: int = 1000) -> None:
        self.stage, self.total, self.every = stage, total, every
        self.done, self._next = 0, every

    def add(self, n: int) -> None:
        self.done += n
        if self.done >= self._next or (self.total is not None and self.done >= self.total):
            report_progress(self.stage, self.done, self.total)
            self._next = self.done + self.every
