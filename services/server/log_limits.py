"""Reading job logs in bounded memory: the last lines from the end of the file, a follow
that ends when the job's output has been idle too long, and one that ends with the job."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

BLOCK = 64 * 1024


def tail_file(path: Path, lines: int, max_bytes: int) -> str:
    """The last `lines` lines of `path`, read backwards in blocks from its end; never more
    than `max_bytes` of it (a log of one endless line gives its last `max_bytes`)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        start, chunks, newlines = end, [], 0
        while start > 0 and newlines <= lines and end - start < max_bytes:
            step = min(BLOCK, start, max_bytes - (end - start))
            start -= step
            f.seek(start)
            chunk = f.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + "\n" if kept else ""


async def idle_limited(chunks: AsyncIterator[str], idle_seconds: float) -> AsyncIterator[str]:
    """`chunks` until they end, or until none came for `idle_seconds`: then one line says
    why, so a follow of a silent or stuck job does not hold a connection forever."""
    iterator = aiter(chunks)
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(anext(iterator), idle_seconds)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield (
                    f"\n[selfie] no output for {idle_seconds:g} s: the follow ends here "
                    "(the job goes on); follow again to keep reading\n"
                )
                return
            yield chunk
    finally:
        await _close(iterator)


async def until_ended(
    chunks: AsyncIterator[str],
    ended: Callable[[], Awaitable[bool]],
    whole: Callable[[], Awaitable[str]],
    poll_seconds: float,
) -> AsyncIterator[str]:
    """`chunks` (a tail of the job's log from its first byte) until they end, or until the
    job has: whenever no chunk came for `poll_seconds`, `ended()` is asked, and once the job
    has ended the rest of its log is taken from `whole()` (what the tail sent is a prefix of
    it) and the tail closed. A tail that keeps polling its file after the job's end (Ray's
    reads on for ~5 s) then ends with the job, and loses nothing it had not read yet."""
    iterator = aiter(chunks)
    sent = 0
    pending: asyncio.Future | None = None
    try:
        while True:
            pending = asyncio.ensure_future(anext(iterator))
            while not (await asyncio.wait({pending}, timeout=poll_seconds))[0]:
                if await ended():
                    await _cancel(pending)
                    rest = (await whole())[sent:]
                    if rest:
                        yield rest
                    return
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            sent += len(chunk)
            yield chunk
    finally:
        if pending is not None:
            await _cancel(pending)
        await _close(iterator)


async def _cancel(pending: asyncio.Future) -> None:
    """Stop a read still waiting (an iterator cannot be closed while a read of it runs)."""
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await pending


async def _close(iterator: AsyncIterator[str]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
