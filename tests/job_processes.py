"""A job's processes, read from /proc: what a stopped job must leave behind is nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def process_group(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


def wait_group_gone(pgid: int, timeout: float) -> list[int]:
    """Wait for a process group to empty; return what is left (empty when it did)."""
    deadline = time.time() + timeout
    while (left := process_group(pgid)) and time.time() < deadline:
        time.sleep(0.2)
    return left


def kill_group(pgid: int) -> None:
    """The test's own clean-up: end whatever a failed check left running."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
