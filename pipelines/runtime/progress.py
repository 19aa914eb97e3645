"""Progress of a running job as one line of JSON in its log, for the live view the client
shows (`selfie logs -f`, `selfie submit --follow`, `make demo`): stage, work done out of the
total, the current best, and a few figures. The raw log keeps every line."""

from __future__ import annotations

import json
import os
from typing import Any

from pipelines.specs.names import PROGRESS_ENV, PROGRESS_MARKER


def report_progress(stage: str, done: int, total: int | None = None, **figures: Any) -> None:
    """Print one progress line (stage, done/total, figures) to the job's log."""
    if os.environ.get(PROGRESS_ENV) != "1":
        return
    line = {"stage": stage, "done": done, "total": total, **figures}
    print(PROGRESS_MARKER + json.dumps(line, default=float), flush=True)


class CountProgress:
    """A `progress(n)` callback (as ingest takes) that prints a line every `every` items."""

    def __init__(self, stage: str, every: int = 1000) -> None:
        self.stage, self.every, self.done, self._next = stage, every, 0, every

    def __call__(self, n: int) -> None:
        self.done += n
        if self.done >= self._next:
            report_progress(self.stage, self.done)
            self._next = self.done + self.every
