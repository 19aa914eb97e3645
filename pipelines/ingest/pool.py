"""Running ingest tasks on a process pool, results in task order, progress as they finish.

Results are returned in task order (not completion order), so what ingest writes from them
does not depend on the worker count or on which task finished first. Workers come from a
forkserver that has already imported the task module: a fork of a process holding threads
(a progress bar, a Ray driver) can deadlock, and a fresh interpreter per worker is slow.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

TASK_MODULE = "pipelines.ingest.shard_tasks"


def default_workers() -> int:
    return os.cpu_count() or 1


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int | None,
    on_result: Callable[[R], None] | None = None,
) -> list[R]:
    """`[fn(t) for t in tasks]` on up to `workers` processes; the first error is raised after
    pending tasks are cancelled. One worker (or one task) runs in this process: no pool."""
    workers = min(workers or default_workers(), len(tasks))
    if workers <= 1:
        results = []
        for task in tasks:
            results.append(fn(task))
            if on_result:
                on_result(results[-1])
        return results
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([TASK_MODULE])
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, task) for task in tasks]
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    result = fut.result()  # raises the task's error
                    if on_result:
                        on_result(result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return [f.result() for f in futures]
