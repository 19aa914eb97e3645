"""The live view of a followed job: one status line (stage, work done of the total, the
current best or last figures, elapsed) instead of the raw log, whose Ray Tune tables and
worker prefixes scroll by by the hundred. Built from the progress lines jobs print
(`SELFIE_PROGRESS {json}`); errors in the log are shown as they come, and when the job did
not succeed the end of its raw log follows.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from pipelines.specs.names import PROGRESS_MARKER, RESULT_MARKER
from services.client.rest_client import SelfieClient
from services.server.log_lines import is_error_line

TAIL_LINES = 30
PLAIN_EVERY_S = 15.0  # without a terminal (CI, a pipe): a line at most this often


def parse_progress(line: str) -> dict[str, Any] | None:
    """The progress record in a log line (workers' lines carry a Ray prefix before it)."""
    at = line.find(PROGRESS_MARKER)
    if at < 0:
        return None
    try:
        record = json.loads(line[at + len(PROGRESS_MARKER) :])
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "stage" in record else None


def describe(record: dict[str, Any]) -> str:
    """`pretrain  step 120/800 (15%)  loss 2.31  selection_accuracy 0.41`"""
    done, total = record.get("done", 0), record.get("total")
    units = {"pretrain": "step", "sweep": "trials", "ingest": "images", "probe": "encoders"}
    unit = units.get(record["stage"], "")
    count = f"{done}/{total} ({100 * done / total:.0f}%)" if total else f"{done}"
    figures = [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in record.items()
        if k not in ("stage", "done", "total")
    ]
    return "  ".join([f"{record['stage']:<8}", f"{unit} {count}".strip(), *figures])


@dataclass
class JobView:
    """What the view knows so far; fed line by line."""

    started: float = field(default_factory=time.monotonic)
    progress: dict[str, Any] | None = None
    stages: list[str] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    partial: str = ""

    def feed(self, chunk: str) -> list[str]:
        """Take a chunk of log; return the lines worth printing above the status line."""
        shown: list[str] = []
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self.tail.append(line)
            record = parse_progress(line)
            if record is not None:
                if not self.stages or self.stages[-1] != record["stage"]:
                    self.stages.append(record["stage"])
                    if len(self.stages) > 1:
                        shown.append(f"done: {self.stages[-2]}")
                self.progress = record
            elif is_error_line(line) and RESULT_MARKER not in line:
                shown.append(line.strip())
        return shown

    def status(self) -> str:
        elapsed = time.monotonic() - self.started
        clock = f"{int(elapsed // 60)}:{int(elapsed % 60):02d}"
        body = describe(self.progress) if self.progress else "starting"
        return f"[{clock}] {body}"


def print_status(console: Console, view: JobView) -> None:
    """The status as one printed line, however long (rich wraps at 80 columns without a
    terminal: a figure cut in two in a CI log or a pipe)."""
    console.print(view.status(), highlight=False, markup=False, soft_wrap=True)


def _line(view: JobView) -> Text:
    """The live line on a terminal: one row, cut with an ellipsis rather than wrapped (a
    wrapped live line leaves its first rows behind as it redraws)."""
    return Text(view.status(), no_wrap=True, overflow="ellipsis")


def follow_live(client: SelfieClient, job_id: str, console: Console) -> JobView:
    """Follow a job's log until it ends, showing the live view; return what was seen."""
    view = JobView()
    last_plain = 0.0
    with Live(_line(view), console=console, transient=True, auto_refresh=False) as live:
        for chunk in client.follow_logs(job_id):
            for line in view.feed(chunk):
                console.print(line, highlight=False, markup=False)
            if console.is_terminal:
                live.update(_line(view), refresh=True)
            elif time.monotonic() - last_plain > PLAIN_EVERY_S:
                print_status(console, view)
                last_plain = time.monotonic()
    print_status(console, view)
    job = client.job(job_id)
    if job.state != "SUCCEEDED" and view.tail:
        console.print(f"job {job.state}; the last lines of its log:", highlight=False)
        for line in view.tail:
            console.print(line, highlight=False, markup=False)
    return view
