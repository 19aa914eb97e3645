"""Reading job logs in bounded memory: the last lines from the end of the file, and a
follow that ends when the job's output has been idle too long."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
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
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
